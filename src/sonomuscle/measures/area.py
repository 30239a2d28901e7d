"""Size and brightness of a mask: area (2D), volume (3D) and echo intensity.

Sizes are element counts times the element's size, in mm² / mm³ when spacing is known and in px² / voxels
otherwise (the caller's units column says which).
"""

from __future__ import annotations

import math

import numpy as np

from sonomuscle.errors import InputError
from sonomuscle.measures.spacing import checked_spacing


def _element_size(mask: np.ndarray, spacing: tuple[float, ...] | None, ndim: int) -> float:
    if mask.ndim != ndim:
        raise InputError(None, f"expected a {ndim}D mask, got shape {mask.shape}")
    return float(np.prod(checked_spacing(spacing, ndim)))


def area(mask: np.ndarray, spacing: tuple[float, float] | None) -> float:
    """Pixels in the mask × pixel area (mm², or px² without spacing)."""
    mask = np.asarray(mask)
    return float(np.count_nonzero(mask)) * _element_size(mask, spacing, 2)


def volume(mask: np.ndarray, spacing: tuple[float, float, float] | None) -> float:
    """Voxels in the mask × voxel volume (mm³, or voxels without spacing)."""
    mask = np.asarray(mask)
    return float(np.count_nonzero(mask)) * _element_size(mask, spacing, 3)


def echo_intensity(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean grey value of the original (unnormalised) image inside the mask; NaN for an empty mask."""
    image, mask = np.asarray(image), np.asarray(mask, dtype=bool)
    if image.shape != mask.shape:
        raise InputError(None, f"image shape {image.shape} and mask shape {mask.shape} differ")
    return float(image[mask].mean()) if mask.any() else math.nan
