"""Partial labels for multi-label segmentation: an image may be annotated for only some structures.

``StackLabelsd`` turns the per-kind masks of a datalist entry (e.g. ``aponeurosis``, ``fascicle``) into one
channel-first ``label`` with one channel per kind; a kind the entry lacks becomes a channel of ``-1``
("not annotated", docs/CONVENTIONS.md). ``IgnoreUnannotatedd`` blanks such channels in prediction and label
before metrics, so ``DiceMetric(ignore_empty=True)`` returns NaN for them and NaN-aware reductions skip them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform

NOT_ANNOTATED = -1.0


class StackLabelsd(MapTransform):
    """Stack the present label kinds into ``label_key`` (float 0/1, ``-1`` for a missing kind).

    ``keys`` are the label kinds in channel order. Masks may hold 0/1 or 0/255; any non-zero pixel is
    foreground (values are checked beforehand by ``ValidateInputd``). The stacked label takes the meta
    data (affine, file name) of ``ref_key`` so spatial transforms and ``Invertd`` treat it like the image.
    The per-kind keys are removed: later transforms see only ``label``.
    """

    def __init__(self, keys: Sequence[str], ref_key: str = "image", label_key: str = "label") -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.ref_key = ref_key
        self.label_key = label_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        ref = d[self.ref_key]
        spatial_shape = tuple(ref.shape[1:])
        channels = []
        for key in self.keys:
            mask = d.pop(key, None)
            if mask is None:
                channels.append(torch.full(spatial_shape, NOT_ANNOTATED))
            else:
                channels.append((torch.as_tensor(mask)[0] != 0).float())
        label = torch.stack(channels).as_subclass(torch.Tensor)
        meta = dict(ref.meta) if isinstance(ref, MetaTensor) else {}
        d[self.label_key] = MetaTensor(label, meta=meta)
        return d


class IgnoreUnannotatedd(MapTransform):
    """Zero the channels of ``keys`` (e.g. ``pred``, ``label``) wherever ``label_key`` says not annotated.

    Run it after the label has been decollated (channel-first, one case). A wholly unannotated channel
    becomes empty in both prediction and label: Dice with ``ignore_empty`` is NaN there, so it does not
    count as a failure, and distance metrics skip it the same way.
    """

    def __init__(self, keys: Sequence[str], label_key: str = "label") -> None:
        super().__init__(keys)
        self.label_key = label_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        annotated = torch.as_tensor(d[self.label_key]) >= 0
        for key in self.key_iterator(d):
            d[key] = d[key] * annotated.to(d[key].device)
        return d


class ShiftLabeld(MapTransform):
    """Add ``offset`` to a partial label, so that spatial transforms padding with 0 pad "not annotated".

    ``RandRotated`` and ``Rand2DElasticd``/``Rand3DElasticd`` fill pixels that come from outside the image
    with 0, which in a partial label means "background": pixels nobody labelled would teach "no structure
    here". Shifted by ``+1`` around the spatial augmentation (``-1`` → 0, 0 → 1, 1 → 2) and back by ``-1``
    after it, those pixels end as ``-1``, not annotated. Use ``nearest`` interpolation for the label between.
    """

    def __init__(self, keys: Sequence[str] | str, offset: float) -> None:
        super().__init__(keys)
        self.offset = offset

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = d[key] + self.offset
        return d
