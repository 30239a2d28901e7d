"""Dictionary transforms that sit right after loading: datalist spacing into the affine, input checks.

Both run in the deterministic part of a pipeline, so a bad case fails once, while caching, with a
message that names its file (see docs/CONVENTIONS.md, "Errors").
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.transforms import MapTransform, Transform
from monai.utils import ImageMetaKey, MetaKeys

from sonomuscle.errors import InputError

SPACING_KNOWN = "spacing_known"  # meta key set by sonomuscle.data.readers.UltrasoundImageReader


def _source(data: Mapping[Hashable, object], key: Hashable) -> str:
    """The file an item was loaded from, for error messages; the key itself when unknown."""
    item = data[key]
    meta = item.meta if isinstance(item, MetaTensor) else {}
    return str(meta.get(ImageMetaKey.FILENAME_OR_OBJ, key))


class SetSpacingd(MapTransform):
    """Put a datalist entry's ``"spacing"`` (mm, one value per spatial axis) into each key's affine.

    Only files without their own calibration (meta ``"spacing_known"`` False or absent) are changed: a
    DICOM region calibration or a NIfTI header wins over a value typed into a datalist. Both ``affine``
    and ``original_affine`` are scaled, keeping any orientation, so saved outputs carry the spacing too.
    """

    def __init__(
        self, keys: KeysCollection, spacing_key: str = "spacing", allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spacing_key = spacing_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        if d.get(self.spacing_key) is None:
            return d
        spacing = np.asarray(d[self.spacing_key], dtype=np.float64).ravel()
        for key in self.key_iterator(d):
            image = d[key]
            if not isinstance(image, MetaTensor):
                raise TypeError(
                    f"SetSpacingd needs MetaTensors from LoadImaged, got {type(image).__name__} for {key!r}"
                )
            if image.meta.get(SPACING_KNOWN, False):
                continue
            spatial_dims = image.spatial_ndim
            if len(spacing) != spatial_dims or not (spacing > 0).all():
                raise InputError(
                    _source(d, key),
                    f"datalist spacing {spacing.tolist()} must be {spatial_dims} positive values (mm)",
                )
            for meta_key in (MetaKeys.AFFINE, MetaKeys.ORIGINAL_AFFINE):
                affine = torch.as_tensor(image.meta.get(meta_key, image.affine), dtype=torch.float64).clone()
                current = affine_to_spacing(affine, r=spatial_dims)
                affine[:spatial_dims, :spatial_dims] *= torch.as_tensor(spacing) / current
                image.meta[meta_key] = affine  # not the .affine setter: it would re-derive spatial_ndim
            image.meta[SPACING_KNOWN] = True
        return d


class ValidateInputd(Transform):
    """Fail early, naming the file, on inputs a network would silently mangle.

    Expects channel-first tensors (after ``EnsureChannelFirstd``). Checks the image's number of spatial
    dims, finite values in image and labels, label spatial shape equal to the image's, and, when
    ``allowed_values`` is given, label values within it. Label keys absent from an entry are skipped:
    an image may be annotated for only some label kinds.
    """

    def __init__(
        self,
        image_key: str,
        label_keys: Sequence[str] | str = (),
        spatial_dims: int = 2,
        allowed_values: Sequence[float] | None = None,
    ) -> None:
        self.image_key = image_key
        self.label_keys = [label_keys] if isinstance(label_keys, str) else list(label_keys)
        self.spatial_dims = spatial_dims
        self.allowed_values = None if allowed_values is None else torch.as_tensor(list(allowed_values))

    def __call__(self, data: Mapping[Hashable, object]) -> Mapping[Hashable, object]:
        image = torch.as_tensor(data[self.image_key])
        if image.ndim != self.spatial_dims + 1:
            raise InputError(
                _source(data, self.image_key),
                f"expected a {self.spatial_dims}D image (channel-first shape with {self.spatial_dims + 1} axes), "
                f"got shape {tuple(image.shape)}",
            )
        self._check_finite(data, self.image_key, image)
        for key in self.label_keys:
            if key not in data or data[key] is None:
                continue
            label = torch.as_tensor(data[key])
            if label.shape[1:] != image.shape[1:]:
                raise InputError(
                    _source(data, key),
                    f"label {key!r} spatial shape {tuple(label.shape[1:])} differs from image "
                    f"{tuple(image.shape[1:])} ({_source(data, self.image_key)})",
                )
            self._check_finite(data, key, label)
            if self.allowed_values is not None:
                values = torch.unique(label)
                bad = values[~torch.isin(values, self.allowed_values.to(values.dtype))]
                if bad.numel():
                    raise InputError(
                        _source(data, key),
                        f"label {key!r} has values {bad[:6].tolist()} outside {self.allowed_values.tolist()}",
                    )
        return data

    @staticmethod
    def _check_finite(data: Mapping[Hashable, object], key: Hashable, tensor: torch.Tensor) -> None:
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            n = int((~torch.isfinite(tensor)).sum())
            raise InputError(_source(data, key), f"{key!r} contains {n} NaN or infinite values")
