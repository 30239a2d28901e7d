"""Cross-sectional measures of the structures in a 2D label map: area, perimeter and echo intensity.

Anatomical cross-sectional area (ACSA) is the pixel count times the pixel area (DeepACSA's definition).
The perimeter is the length of the outline at half height of the lightly smoothed mask (marching squares
on a Gaussian with σ = 1 px), in mm along each axis's own spacing: the staircase of raw pixel edges
overstates a smooth outline by up to 4/π (27 %), corner-cutting contours by a few per cent; the smoothed
contour stays within about 1 % for outlines wider than ~10 px. Echo intensity is the mean grey value (and
its population standard deviation) of the original image inside the mask, in the image's own grey levels
(0–255 for 8-bit files, :func:`grey_range` says which), as muscle-quality studies report it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy.ndimage import gaussian_filter
from skimage.measure import find_contours

from sonomuscle.errors import InputError
from sonomuscle.measures.area import area, echo_intensity
from sonomuscle.measures.spacing import checked_spacing

_SMOOTHING_PX = 1.0
MM2_PER_CM2 = 100.0


def perimeter(mask: np.ndarray, spacing: tuple[float, float] | None) -> float:
    """Length of the mask's outline (all pieces, holes included), mm or px without spacing; 0 when empty."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise InputError(None, f"expected a 2D mask, got shape {mask.shape}")
    if not mask.any():
        return 0.0
    scale = np.asarray(checked_spacing(spacing, 2))
    smooth = gaussian_filter(np.pad(mask, 3).astype(np.float32), _SMOOTHING_PX)
    return float(
        sum(np.linalg.norm(np.diff(c, axis=0) * scale, axis=1).sum() for c in find_contours(smooth, 0.5))
    )


def grey_range(grey: np.ndarray) -> str:
    """The grey scale echo intensities are on: ``0-255`` for 8-bit images, else the range found."""
    grey = np.asarray(grey)
    low, high = float(grey.min()), float(grey.max())
    if low >= 0 and high <= 255 and np.array_equal(grey, np.round(grey)):
        return "0-255"
    return f"{low:g}-{high:g}"


def structure_measures(
    grey: np.ndarray,
    label_map: np.ndarray,
    classes: Mapping[str, int],
    spacing: tuple[float, float] | None,
) -> list[dict]:
    """One row per class: area (mm² and cm², or px²), perimeter (mm or px) and echo intensity of ``grey``.

    An absent structure gets area and perimeter 0 and no echo intensity (NaN).
    """
    grey, label_map = np.asarray(grey), np.asarray(label_map)
    if grey.shape != label_map.shape:
        raise InputError(None, f"image shape {grey.shape} and label map shape {label_map.shape} differ")
    rows = []
    for name, value in classes.items():
        mask = label_map == value
        size = area(mask, spacing)
        inside = grey[mask]
        rows.append(
            {
                "structure": name,
                "area": size,
                "area_cm2": size / MM2_PER_CM2 if spacing is not None else math.nan,
                "perimeter": perimeter(mask, spacing),
                "echo_intensity": echo_intensity(grey, mask),
                "echo_intensity_sd": float(inside.std()) if inside.size else math.nan,
            }
        )
    return rows
