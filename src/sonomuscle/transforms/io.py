"""Dictionary transforms that sit at loading: decoded frames passed through, datalist calibration into the
affine, input checks.

They run in the deterministic part of a pipeline, so a bad case fails once, while caching, with a
message that names its file (see docs/CONVENTIONS.md, "Errors").
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.transforms import LoadImaged, MapTransform, Transform
from monai.utils import ImageMetaKey, MetaKeys

from sonomuscle.classes import written_values
from sonomuscle.data.readers import UltrasoundImageReader, decoded_tensor, read_ultrasound
from sonomuscle.errors import InputError
from sonomuscle.transforms.crop import box_corners, picture_rows

SPACING_KNOWN = "spacing_known"  # meta key set by sonomuscle.data.readers.UltrasoundImageReader
# meta key set by SetSpacingd: where the spacing came from, "file", "spacing", "depth" or "none"
CALIBRATION = "calibration"


def source_of(data: Mapping[Hashable, object], key: Hashable) -> str:
    """The file an item was loaded from, for error messages; the key itself when unknown."""
    item = data[key]
    meta = item.meta if isinstance(item, MetaTensor) else {}
    return str(meta.get(ImageMetaKey.FILENAME_OR_OBJ, key))


def spacing_of(tensor: torch.Tensor) -> tuple[float, ...] | None:
    """Voxel spacing (mm) of a channel-first MetaTensor, or None for a plain tensor (distances in voxels)."""
    if not isinstance(tensor, MetaTensor):
        return None
    return tuple(float(s) for s in np.asarray(tensor.pixdim).reshape(-1)[: tensor.ndim - 1])


def known_spacing(tensor: torch.Tensor) -> tuple[float, ...] | None:
    """Spacing in mm when the file or datalist calibrated it; None (measures in px) otherwise."""
    if isinstance(tensor, MetaTensor) and tensor.meta.get(SPACING_KNOWN, False):
        return spacing_of(tensor)
    return None


def units_of(tensor: torch.Tensor) -> str:
    """``mm`` for a calibrated image, ``px`` for one without calibration (its distances are in pixels)."""
    return "px" if known_spacing(tensor) is None else "mm"


class LoadUltrasoundd(LoadImaged):
    """``LoadImaged`` for ultrasound: :class:`UltrasoundImageReader` only, channel first, float32; frames
    already decoded (MetaTensors from :func:`sonomuscle.data.frames.read_frames`) pass through.

    Only the ultrasound reader is tried: ``LoadImage`` would fall back to MONAI's other readers when it
    fails and bury the file's one-line problem in "cannot find a suitable reader"; here the reader's
    :class:`~sonomuscle.errors.InputError` reaches the user. Images and frames share one pipeline.
    """

    def __init__(
        self, keys: KeysCollection, mask: bool = False, labels: bool = False, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(
            keys,
            reader=UltrasoundImageReader(mask=mask, labels=labels),
            image_only=True,
            ensure_channel_first=True,
            allow_missing_keys=allow_missing_keys,
        )
        self.mask = mask
        self.labels = labels

    def __call__(self, data: Mapping[Hashable, object], reader=None) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            if not isinstance(d[key], MetaTensor):
                d[key] = decoded_tensor(read_ultrasound(d[key], mask=self.mask, labels=self.labels))
        return d


class SetSpacingd(MapTransform):
    """Calibrate each key's affine from the datalist: ``"spacing"`` (mm per pixel, one value per spatial
    axis, or one for all) or ``"depth"`` (the imaged depth in mm that scanners display, over the rows of the ultrasound
    picture: the height of the entry's ``"crop"`` box, else found by
    :func:`~sonomuscle.transforms.crop.picture_rows`), in that order.

    Only files without their own calibration (meta ``"spacing_known"`` False or absent) are changed: a
    DICOM region calibration or a NIfTI header wins over a value typed into a datalist. Both ``affine``
    and ``original_affine`` are scaled, keeping any orientation, so saved outputs carry the spacing too.
    Meta ``"calibration"`` records the source: ``file``, ``spacing``, ``depth`` or ``none``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        spacing_key: str = "spacing",
        depth_key: str = "depth",
        box_key: str = "crop",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spacing_key = spacing_key
        self.depth_key = depth_key
        self.box_key = box_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            if not isinstance(image, MetaTensor):
                raise TypeError(
                    f"SetSpacingd needs MetaTensors from LoadImaged, got {type(image).__name__} for {key!r}"
                )
            if image.meta.get(SPACING_KNOWN, False):
                image.meta[CALIBRATION] = "file"
                continue
            spacing, source = self._spacing(d, key, image)
            image.meta[CALIBRATION] = source
            if spacing is None:
                continue
            spatial_dims = image.spatial_ndim
            if len(spacing) == 1:  # one value: square pixels (cubic voxels)
                spacing = np.repeat(spacing, spatial_dims)
            if len(spacing) != spatial_dims or not (spacing > 0).all():
                raise InputError(
                    source_of(d, key),
                    f"datalist spacing {spacing.tolist()} must be {spatial_dims} positive values (mm)",
                )
            for meta_key in (MetaKeys.AFFINE, MetaKeys.ORIGINAL_AFFINE):
                found = image.meta.get(meta_key, image.affine)
                affine = torch.as_tensor(found, dtype=torch.float64).clone()
                current = affine_to_spacing(affine, r=spatial_dims)
                affine[:spatial_dims, :spatial_dims] *= torch.as_tensor(spacing) / current
                # not the .affine setter (it would re-derive spatial_ndim); the type kept, so that a batch of
                # calibrated and uncalibrated images collates
                image.meta[meta_key] = affine if isinstance(found, torch.Tensor) else affine.numpy()
            image.meta[SPACING_KNOWN] = True
        return d

    def _spacing(
        self, d: Mapping[Hashable, object], key: Hashable, image: MetaTensor
    ) -> tuple[np.ndarray | None, str]:
        if d.get(self.spacing_key) is not None:
            return np.asarray(d[self.spacing_key], dtype=np.float64).ravel(), "spacing"
        depth = d.get(self.depth_key)
        if depth is None:
            return None, "none"
        if not (np.isfinite(depth) and depth > 0):
            raise InputError(source_of(d, key), f"datalist depth {depth!r} must be a positive number of mm")
        if d.get(self.box_key) is not None:
            start, end = box_corners(d[self.box_key], image)
            rows = int(end[1] - start[1])
        else:
            rows = picture_rows(image[0].numpy())
        mm = float(depth) / rows
        return np.full(image.spatial_ndim, mm), "depth"


class ValidateInputd(Transform):
    """Fail early, naming the file, on inputs a network would silently mangle.

    Expects channel-first tensors (after ``EnsureChannelFirstd``). Checks the image's number of spatial
    dims and, with ``min_size``, that no side is shorter (a 1-pixel "image" would otherwise fail only when
    its outputs are written, stopping a batch), finite values in image and labels, label spatial shape equal to the image's, and, when
    ``allowed_values`` is given, label values within it. Label keys absent from an entry are skipped:
    an image may be annotated for only some label kinds.
    """

    def __init__(
        self,
        image_key: str,
        label_keys: Sequence[str] | str = (),
        spatial_dims: int = 2,
        allowed_values: Sequence[float] | None = None,
        min_size: int = 1,
    ) -> None:
        self.image_key = image_key
        self.min_size = min_size
        self.label_keys = [label_keys] if isinstance(label_keys, str) else list(label_keys)
        self.spatial_dims = spatial_dims
        self.allowed_values = None if allowed_values is None else torch.as_tensor(list(allowed_values))

    def __call__(self, data: Mapping[Hashable, object]) -> Mapping[Hashable, object]:
        image = _plain(data[self.image_key])
        if image.ndim != self.spatial_dims + 1:
            raise InputError(
                source_of(data, self.image_key),
                f"expected a {self.spatial_dims}D image (channel-first shape with {self.spatial_dims + 1} axes), "
                f"got shape {tuple(image.shape)}",
            )
        if min(image.shape[1:]) < self.min_size:
            raise InputError(
                source_of(data, self.image_key),
                f"image of {'×'.join(map(str, image.shape[1:]))} pixels is too small "
                f"(at least {self.min_size} on every side)",
            )
        self._check_finite(data, self.image_key, image)
        for key in self.label_keys:
            if key not in data or data[key] is None:
                continue
            label = _plain(data[key])
            if label.shape[1:] != image.shape[1:]:
                raise InputError(
                    source_of(data, key),
                    f"label {key!r} spatial shape {tuple(label.shape[1:])} differs from image "
                    f"{tuple(image.shape[1:])} ({source_of(data, self.image_key)})",
                )
            self._check_spacing(data, self.image_key, key)
            self._check_finite(data, key, label)
            if self.allowed_values is not None:
                values = torch.unique(label)
                bad = values[~torch.isin(values, self.allowed_values.to(values.dtype))]
                if bad.numel():
                    raise InputError(
                        source_of(data, key),
                        f"label {key!r} has values {written_values(bad[:6].tolist())} outside "
                        f"{written_values(self.allowed_values.tolist())}",
                    )
        return data

    @staticmethod
    def _check_spacing(data: Mapping[Hashable, object], image_key: Hashable, key: Hashable) -> None:
        """Image and label must lie on the same grid: resampled apart they would no longer match. (A mask
        file without a calibration, such as a PNG beside a DICOM, takes its image's.)"""
        image, label = data[image_key], data[key]
        if not (isinstance(image, MetaTensor) and isinstance(label, MetaTensor)):
            return
        if not (image.meta.get(SPACING_KNOWN) and label.meta.get(SPACING_KNOWN)):
            return
        ours, theirs = image.pixdim.double(), label.pixdim.double()
        if not torch.allclose(ours, theirs, rtol=1e-3, atol=0):
            raise InputError(
                source_of(data, key),
                f"label {key!r} spacing {[round(float(v), 4) for v in theirs]} mm differs from its image's "
                f"{[round(float(v), 4) for v in ours]} mm ({source_of(data, image_key)})",
            )

    @staticmethod
    def _check_finite(data: Mapping[Hashable, object], key: Hashable, tensor: torch.Tensor) -> None:
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            n = int((~torch.isfinite(tensor)).sum())
            raise InputError(source_of(data, key), f"{key!r} contains {n} NaN or infinite values")


class FitsInMemoryd(Transform):
    """Refuse, naming the file, a volume that resampled to ``pixdim`` would not fit in memory.

    A scan of another kind (47×63×44 voxels of 1.5 mm) or a header in the wrong units becomes billions of
    voxels at a bundle's fine spacing, and ``Spacingd`` then dies allocating them, taking the batch with it.
    Checked before resampling: the resampled volume, ``copies`` times over (the resampled image, the network's
    output per class, the inverted prediction), must fit in ``max_bytes`` (default: the memory available
    now); a case that does not is skipped with one line and the rest of the batch is measured.
    """

    def __init__(
        self, image_key: str, pixdim: Sequence[float], copies: int = 8, max_bytes: float | None = None
    ) -> None:
        self.image_key = image_key
        self.pixdim = np.asarray(pixdim, dtype=float)
        self.copies = copies
        self.max_bytes = max_bytes

    def __call__(self, data: Mapping[Hashable, object]) -> Mapping[Hashable, object]:
        image = data[self.image_key]
        if not isinstance(image, MetaTensor):
            return data
        spacing = np.asarray(image.pixdim, dtype=float)[: len(self.pixdim)]
        shape = np.asarray(image.shape[1:], dtype=float)
        resampled = np.ceil(shape * spacing / self.pixdim)
        needed = float(np.prod(resampled)) * 4 * self.copies  # float32
        available = available_memory() if self.max_bytes is None else self.max_bytes
        if available is not None and needed > available:
            raise InputError(
                source_of(data, self.image_key),
                f"{'×'.join(f'{n:g}' for n in shape)} voxels of {'×'.join(f'{v:g}' for v in spacing)} mm become "
                f"{'×'.join(f'{n:g}' for n in resampled)} at the bundle's {'×'.join(f'{v:g}' for v in self.pixdim)} "
                f"mm, about {needed / 2**30:.0f} GB to infer with {available / 2**30:.0f} GB free: check the "
                "header's voxel size (its units), or give a coarser --pixdim",
            )
        return data


def available_memory() -> float | None:
    """Bytes of memory available now (Linux ``MemAvailable``); None where it cannot be told."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _plain(item: object) -> torch.Tensor:
    """The data of a MetaTensor as a plain tensor (no copy): checks on it skip MetaTensor's bookkeeping,
    which cost more than the checks themselves."""
    return item.as_tensor() if isinstance(item, MetaTensor) else torch.as_tensor(item)
