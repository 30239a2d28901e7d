"""Which bundles MONAI Label serves, and the writable copies it serves them from.

Training through MONAI Label replaces a bundle's ``models/model.pt``; the installed bundles stay as shipped,
so each served bundle is a copy under the studies' ``.sonomuscle/models`` folder. The copy is refreshed from
the installed bundle at every start (configs and docs follow an upgraded sonomuscle), but a model trained
there is kept: a user's retrained model survives restarts and upgrades until its file is deleted.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

from monai.bundle import ConfigParser

from sonomuscle.data.readers import read_ultrasound
from sonomuscle.errors import InputError
from sonomuscle.workflows import bundle_dir, bundle_names

logger = logging.getLogger(__name__)
MODELS_SUBDIR = Path(".sonomuscle") / "models"
# where a bundle's inference config names its classes: label kinds of a multi-label 2D bundle, the classes of
# a label-map bundle (from its checkpoint), the labels of a 3D bundle
LABEL_KEYS = ("label_values", "classes", "labels")


def _data_format(bundle: Path) -> dict:
    return json.loads((bundle / "configs" / "metadata.json").read_text())["network_data_format"]


def is_segmentation(bundle: Path) -> bool:
    """A bundle whose network outputs an image (not a class or a value per image)."""
    return next(iter(_data_format(bundle)["outputs"].values()))["type"] == "image"


def bundle_dims(bundle: Path) -> int:
    """2 or 3: the spatial dimensions of the images a bundle takes (as MONAI Label reads them)."""
    return len(next(iter(_data_format(bundle)["inputs"].values()))["spatial_shape"])


def image_dims(path: str | Path) -> int | None:
    """2 or 3: the spatial dimensions of an image file as sonomuscle reads it; ``None`` if unreadable."""
    try:
        return read_ultrasound(path).array.ndim
    except InputError as err:
        logger.warning(f"left out: {err}")
        return None


def segmentation_bundles() -> list[str]:
    """Every segmentation bundle sonomuscle knows."""
    return [name for name in bundle_names() if is_segmentation(bundle_dir(name))]


def chosen_bundles(names: str | Sequence[str] | None) -> list[str]:
    """``names`` (a comma list, as MONAI Label's ``--conf`` passes it, or ``all``/empty for every
    segmentation bundle), checked: an image-level or unknown bundle is one clear error."""
    available = segmentation_bundles()
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names or list(names) == ["all"]:
        return available
    wrong = [n for n in names if n not in available]
    if wrong:
        raise InputError(None, f"cannot serve {wrong}: the segmentation bundles are {', '.join(available)}")
    return list(names)


def working_copies(studies: str | Path, names: Sequence[str]) -> dict[str, Path]:
    """Each bundle's writable copy under ``studies/.sonomuscle/models``, refreshed from the installed bundle
    but for a ``models/model.pt`` already there."""
    root = Path(studies) / MODELS_SUBDIR
    copies = {}
    for name in names:
        target = root / name
        kept_model = target / "models" / "model.pt"

        def skipped(folder: str, files: list[str], kept_model: Path = kept_model) -> set[str]:
            skip = {"runs", "eval", "__pycache__"} & set(files)
            if Path(folder).name == "models" and kept_model.is_file():
                skip.add("model.pt")
            return skip

        shutil.copytree(bundle_dir(name), target, ignore=skipped, dirs_exist_ok=True)
        copies[name] = target
    return copies


def viewer_labels(config: ConfigParser) -> dict[str, int]:
    """Label name → value in the label map a viewer receives, from a bundle's inference config."""
    for key in LABEL_KEYS:
        if config.get(key) is not None:
            return {str(name): int(value) for name, value in dict(config.get_parsed_content(key)).items()}
    raise InputError(None, f"the inference config names no labels (none of {', '.join(LABEL_KEYS)})")
