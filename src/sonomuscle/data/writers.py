"""Image writers for per-image outputs that are written once and looked at, not archived."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from monai.data import PILWriter
from PIL import Image

from sonomuscle.io import atomic_path

# a palette that tells classes apart on screen (PASCAL VOC's first colours); the indices are what counts
LABEL_PALETTE = list(bytes.fromhex("000000 800000 008000 808000 000080 800080 008080 808080"))


class LightPNGWriter(PILWriter):
    """MONAI's ``PILWriter`` with zlib level 1: for 512² masks the default level takes several times
    longer per image, for files barely smaller (masks are mostly one value)."""

    def write(self, filename, format=None, verbose: bool = False, **kwargs) -> None:
        super().write(filename, format=format, verbose=verbose, **{"compress_level": 1, **kwargs})


def write_indexed_label_map(label_map: np.ndarray, path: Path) -> Path:
    """A (rows, columns) uint8 label map as an indexed-colour PNG: its indices are the values, its colours
    show the classes apart in any viewer (what annotation tools save, and what the label readers read)."""
    image = Image.frombytes("P", label_map.shape[::-1], np.ascontiguousarray(label_map, np.uint8).tobytes())
    image.putpalette(LABEL_PALETTE)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path
