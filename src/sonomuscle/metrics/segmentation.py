"""Per-case overlap and surface metrics of a label map against a reference, in millimetres.

The numbers come from MONAI's metric functions; this module only splits labels, passes the spacing and decides
what an empty mask means, because MONAI returns NaN / inf there without saying why:

- both masks empty → Dice 1 (nothing to find, nothing found), distances NaN, flag ``both_empty``;
- only one empty → Dice 0, distances NaN (no surface to measure from), flag ``empty_pred`` / ``empty_ref``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from monai.metrics import (
    compute_average_surface_distance,
    compute_confusion_matrix_metric,
    compute_dice,
    compute_hausdorff_distance,
    get_confusion_matrix,
)

SEGMENTATION_KEYS = ("dice", "hd95", "assd", "precision", "recall")


def segmentation_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | None,
    labels: Mapping[str, int],
) -> dict[str, dict[str, float | str | None]]:
    """Dice, HD95, ASSD (mm, or px when ``spacing`` is None), precision and recall for each named label.

    ``pred`` and ``ref`` are integer label maps of one shape, ``(X, Y[, Z])``. Each label's entry also holds
    ``flag``: ``None`` or why the distances are NaN.
    """
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    if spacing is not None and len(spacing) != ref.ndim:
        raise ValueError(f"{len(spacing)} spacing values for a {ref.ndim}D mask")
    return {name: _binary_metrics(pred == value, ref == value, spacing) for name, value in labels.items()}


def _binary_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None) -> dict:
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if not (has_pred and has_ref):
        flag = "both_empty" if not (has_pred or has_ref) else ("empty_pred" if has_ref else "empty_ref")
        return {
            "dice": 1.0 if flag == "both_empty" else 0.0,
            "hd95": math.nan,
            "assd": math.nan,
            "precision": math.nan if not has_pred else 0.0,
            "recall": math.nan if not has_ref else 0.0,
            "flag": flag,
        }
    # MONAI wants one-hot (batch, channel, spatial...): one batch item, one foreground channel
    p = torch.from_numpy(pred[None, None].astype(np.float32))
    r = torch.from_numpy(ref[None, None].astype(np.float32))
    spacing = None if spacing is None else [float(s) for s in spacing]
    confusion = get_confusion_matrix(p, r, include_background=True)
    return {
        "dice": _item(compute_dice(p, r, include_background=True)),
        "hd95": _item(
            compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=spacing)
        ),
        "assd": _item(
            compute_average_surface_distance(p, r, include_background=True, symmetric=True, spacing=spacing)
        ),
        "precision": _item(compute_confusion_matrix_metric("precision", confusion)),
        "recall": _item(compute_confusion_matrix_metric("sensitivity", confusion)),
        "flag": None,
    }


def _item(value: torch.Tensor) -> float:
    return float(value.reshape(-1)[0])
