"""sonomuscle: deep learning for muscle ultrasound on MONAI."""

import os
import warnings

__version__ = "0.11.0"

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


quiet_library_notices()

from sonomuscle.errors import install_one_line_errors  # noqa: E402  (after the filters it must not undo)

install_one_line_errors()
