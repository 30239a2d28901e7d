"""sonomuscle: deep learning for muscle ultrasound on MONAI.

Importing the package changes nothing in the interpreter; the ``sonomuscle`` command and the bundle runs
(:mod:`sonomuscle.bundle_session`) install the one-line errors and quiet the library notices for themselves.
"""

import os
import warnings

__version__ = "0.12.0"

# Library notices that say nothing about the user's data or run, and would bury our progress lines:
# MONAI registers a GPU DICOM decoder on every LoadImage and passes arguments its own metrics and
# scikit-image have deprecated; a structure no validation image annotates (or the model does not find)
# makes MONAI's distances and numpy's per-metric summaries NaN, which the epoch line reports as
# "not scored". SONOMUSCLE_VERBOSE=1 keeps them.
QUIET_NOTICES = (
    "NvImgCodecPydicomReader",
    ".*always_return_as_numpy",
    "Parameter `min_size` is deprecated",
    "the (prediction|ground truth) of class .* is all 0",
    "Mean of empty slice",
    "All-NaN slice encountered",
    "Degrees of freedom <= 0",
)


def quiet_library_notices() -> None:
    """Install the filters for ``QUIET_NOTICES`` (again inside a ``catch_warnings`` that reset them)."""
    if not os.environ.get("SONOMUSCLE_VERBOSE"):
        for notice in QUIET_NOTICES:
            warnings.filterwarnings("ignore", message=notice)
