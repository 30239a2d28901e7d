"""How sure the network was of what it marked: the mean probability inside each predicted structure.

A clear aponeurosis comes out of the sigmoid near 1 across its width; a guessed one (faint, occluded,
out of the training distribution) hovers just above the threshold. The mean over the pixels above the
threshold, per channel, is recorded in the prediction's meta (``"confidence"``) for the measurement
handler, before thresholding discards it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

CONFIDENCE = "confidence"


class RecordConfidenced(MapTransform):
    """Meta ``"confidence"``: per channel of a channel-first probability map, its mean above ``threshold``
    (NaN where nothing is above it)."""

    def __init__(
        self, keys: KeysCollection, threshold: float = 0.5, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.threshold = threshold

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            probabilities = torch.as_tensor(d[key]).flatten(1).float()
            above = probabilities > self.threshold
            count = above.sum(dim=1)
            mean = (probabilities * above).sum(dim=1) / count.clamp(min=1)
            mean[count == 0] = float("nan")
            if isinstance(d[key], MetaTensor):
                d[key].meta[CONFIDENCE] = mean.tolist()
        return d
