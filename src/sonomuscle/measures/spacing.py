"""The one spacing check every measure shares: mm per axis, or unit steps (pixels) when unknown."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sonomuscle.errors import InputError


def checked_spacing(spacing: Sequence[float] | None, ndim: int) -> np.ndarray:
    """Spacing as ``ndim`` positive floats; ones when ``spacing`` is None (measures then come in pixels)."""
    step = np.ones(ndim) if spacing is None else np.asarray(spacing, dtype=float)
    if step.shape != (ndim,) or not (step > 0).all():
        raise InputError(
            None, f"spacing {spacing} is not {ndim} positive numbers (mm per axis) for a {ndim}D mask"
        )
    return step
