"""Partial labels for segmentation: an image may be annotated for only some structures.

``StackLabelsd`` turns the per-kind masks of a datalist entry (e.g. ``aponeurosis``, ``fascicle``), or one
label map of them (as MONAI Label and 3D Slicer save), into one channel-first ``label`` with one channel per
kind; a kind the entry lacks becomes a channel of ``-1`` ("not annotated", docs/CONVENTIONS.md). ``LabelMapChannelsd`` does the same for a label map of named
classes whose entry lists the classes outlined (``"annotated"``). ``IgnoreUnannotatedd`` blanks such
channels in prediction and label before metrics, so ``DiceMetric(ignore_empty=True)`` returns NaN for
them and NaN-aware reductions skip them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform

from sonomuscle.errors import InputError
from sonomuscle.transforms.io import source_of

NOT_ANNOTATED = -1.0


class StackLabelsd(MapTransform):
    """Stack the present label kinds into ``label_key`` (float 0/1, ``-1`` for a missing kind).

    ``keys`` are the label kinds in channel order. Masks may hold 0/1 or 0/255; any non-zero pixel is
    foreground (values are checked beforehand by ``ValidateInputd``). The stacked label takes the meta
    data (affine, file name) of ``ref_key`` so spatial transforms and ``Invertd`` treat it like the image.
    The per-kind keys are removed: later transforms see only ``label``.

    With ``map_values`` (kind → value), an entry without per-kind masks may instead carry a label map under
    ``label_key`` (0 background). A kind the map does not contain counts as not annotated, unless the
    entry's ``annotated_key`` lists it: a map painted for aponeuroses only teaches nothing about fascicles.
    """

    def __init__(
        self,
        keys: Sequence[str],
        ref_key: str = "image",
        label_key: str = "label",
        map_values: Mapping[str, int] | None = None,
        annotated_key: str = "annotated",
    ) -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.ref_key = ref_key
        self.label_key = label_key
        self.map_values = None if map_values is None else dict(map_values)
        self.annotated_key = annotated_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        ref = d[self.ref_key]
        spatial_shape = tuple(ref.shape[1:])
        masks = {key: d.pop(key, None) for key in self.keys}
        annotated = d.pop(self.annotated_key, None)
        if self.map_values is not None and self.label_key in d and all(m is None for m in masks.values()):
            masks = self._from_map(torch.as_tensor(d[self.label_key])[0], annotated)
        channels = []
        for key in self.keys:
            mask = masks[key]
            if mask is None:
                channels.append(torch.full(spatial_shape, NOT_ANNOTATED))
            else:
                channels.append((torch.as_tensor(mask)[0] != 0).float())
        label = torch.stack(channels).as_subclass(torch.Tensor)
        meta = dict(ref.meta) if isinstance(ref, MetaTensor) else {}
        d[self.label_key] = MetaTensor(label, meta=meta)
        return d

    def _from_map(self, label_map: torch.Tensor, annotated: Sequence[str] | None) -> dict[str, object]:
        """Each kind's mask (``1, X, Y``) from the map; ``None`` for a kind not annotated in it."""
        masks: dict[str, object] = {}
        for key in self.keys:
            mask = (label_map == self.map_values[key])[None]
            outlined = key in annotated if annotated is not None else bool(mask.any())
            masks[key] = mask if outlined else None
        return masks


class LabelMapChannelsd(MapTransform):
    """A label map (``1, X, Y``; 0 background, class values) as one channel per class, background first.

    Channel ``i + 1`` is 1 where the map holds the ``i``-th class's value, 0 elsewhere. When the entry's
    ``annotated_key`` lists only some classes (the others were not outlined in this image), a background
    pixel may belong to any class not outlined: there the background channel and those classes' channels
    are ``-1`` (not known), while the outlined classes stay 0 (known absent). Without the list every class
    counts as outlined: a structure missing from the map is absent from the image.
    """

    def __init__(
        self, keys: Sequence[str] | str, classes: Mapping[str, int], annotated_key: str = "annotated"
    ) -> None:
        super().__init__(keys)
        self.classes = dict(classes)
        self.annotated_key = annotated_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        annotated = d.pop(self.annotated_key, None)  # popped: a ragged list would not collate into a batch
        annotated = list(self.classes) if annotated is None else annotated
        for key in self.key_iterator(d):
            label = d[key]
            unknown = sorted(set(annotated) - set(self.classes))
            if unknown:
                raise InputError(
                    source_of(d, key),
                    f"{self.annotated_key!r} names {unknown}, not among the classes {self.classes}",
                )
            label_map = torch.as_tensor(label)[0].as_subclass(torch.Tensor)
            values = torch.tensor([0, *self.classes.values()], dtype=label_map.dtype)
            channels = (label_map[None] == values.reshape(-1, *[1] * label_map.ndim)).float()
            unsure = [0] + [i + 1 for i, name in enumerate(self.classes) if name not in annotated]
            if len(unsure) > 1:  # a background pixel may be a class nobody outlined here
                channels[unsure] = torch.where(label_map[None] == 0, NOT_ANNOTATED, channels[unsure])
            d[key] = MetaTensor(channels, meta=dict(label.meta) if isinstance(label, MetaTensor) else {})
        return d


class LabelMapd(MapTransform):
    """Binary channels (``C, X, Y[, Z]``) as one label map (``1, X, Y[, Z]``, uint8) with ``values[i]`` for
    channel ``i``: what a viewer such as 3D Slicer shows as one segmentation. Where channels overlap, the
    earlier channel wins (an aponeurosis pixel is not also a fascicle pixel)."""

    def __init__(self, keys: Sequence[str] | str, values: Sequence[int]) -> None:
        super().__init__(keys)
        self.values = list(values)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            channels = torch.as_tensor(d[key]).as_subclass(torch.Tensor) != 0
            label_map = torch.zeros(channels.shape[1:], dtype=torch.uint8, device=channels.device)
            for channel, value in reversed(list(zip(channels, self.values, strict=True))):
                label_map[channel] = value
            meta = dict(d[key].meta) if isinstance(d[key], MetaTensor) else {}
            d[key] = MetaTensor(label_map[None], meta=meta)
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
