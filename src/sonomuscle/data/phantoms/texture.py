"""Tissue texture shared by the 2D phantoms."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter


def slow_field(shape: tuple[int, ...], rng: np.random.Generator, spacing: float, depth: float) -> np.ndarray:
    """Smooth multiplicative brightness variation ``1 ± depth`` on a ~5 mm scale (not geometry)."""
    field = gaussian_filter(rng.standard_normal(shape), 5.0 / spacing, mode="wrap")
    return (1.0 + depth * field / (field.std() + 1e-12)).clip(0.3, None).astype(np.float32)
