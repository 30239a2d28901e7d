"""Test-time-augmentation uncertainty: how much a model's answer changes when the image is mirrored.

A model sure of a structure segments it the same in the mirrored image; where it guesses, the two answers
part. One minus the soft Dice of the answers (the mirrored one flipped back), averaged over the foreground
channels, scores an image from 0 (identical) to 1 (nothing in common): MONAI Label's active learning then
offers the unlabelled image the model is least sure of. Mirroring the lateral axis keeps an ultrasound
image physically plausible (the probe turned round); depth is never flipped.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

LATERAL_AXIS = 2  # of a batched (B, C, X, Y[, Z]) tensor: X, the probe's lateral direction


def soft_disagreement(first: torch.Tensor, second: torch.Tensor, foreground: slice = slice(None)) -> float:
    """``1 − soft Dice`` of two probability maps (``C, ...``), averaged over the ``foreground`` channels
    that either map marks; 0 when neither marks anything (nothing to disagree about)."""
    a, b = first[foreground].flatten(1).float(), second[foreground].flatten(1).float()
    overlap, total = (a * b).sum(1), (a + b).sum(1)
    marked = total > 1e-6
    if not marked.any():
        return 0.0
    return float((1 - 2 * overlap[marked] / total[marked]).mean())


def mirror_disagreement(
    predict: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, foreground: slice = slice(None)
) -> float:
    """:func:`soft_disagreement` of ``predict`` (batched image → probabilities) on ``image`` (``C, ...``)
    and on its lateral mirror image."""
    batch = torch.stack([image, image.flip(LATERAL_AXIS - 1)])
    with torch.inference_mode():
        probabilities = predict(batch)
    return soft_disagreement(probabilities[0], probabilities[1].flip(LATERAL_AXIS - 1), foreground)
