"""Image-level labels in the pipeline: regression targets standardised for the loss and back for the user.

The mean and SD are the training split's, held by :class:`~sonomuscle.targets.OutputNames` (and saved in
the checkpoint), so training, validation and inference scale alike and predictions come out in the
targets' own units (degrees, N·m, fraction of maximal activation).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from sonomuscle.targets import OutputNames


class StandardizeTargetsd(MapTransform):
    """``(value − mean) / SD`` per target, or ``value · SD + mean`` with ``inverse=True``; float32."""

    def __init__(
        self,
        keys: KeysCollection,
        outputs: OutputNames,
        inverse: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.outputs = outputs
        self.inverse = inverse

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        # read at call time: inference learns the scale from the checkpoint after the pipeline is built
        mean, sd = (t.to(torch.float32) for t in (self.outputs.mean, self.outputs.sd))
        for key in self.key_iterator(d):
            value = torch.as_tensor(d[key], dtype=torch.float32)
            d[key] = (
                value * sd.to(value.device) + mean.to(value.device) if self.inverse else (value - mean) / sd
            )
        return d
