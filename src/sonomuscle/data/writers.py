"""Image writers for per-image outputs that are written once and looked at, not archived."""

from __future__ import annotations

from monai.data import PILWriter


class LightPNGWriter(PILWriter):
    """MONAI's ``PILWriter`` with zlib level 1: for 512² masks the default level takes several times
    longer per image, for files barely smaller (masks are mostly one value)."""

    def write(self, filename, format=None, verbose: bool = False, **kwargs) -> None:
        super().write(filename, format=format, verbose=verbose, **{"compress_level": 1, **kwargs})
