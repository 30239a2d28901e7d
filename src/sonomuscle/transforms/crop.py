"""Where the ultrasound picture is inside a screen capture, and the crop to it that the 2D pipeline makes.

Exported frames often put a small B-mode picture inside a wide canvas (black, or a scanner's grey user
interface) with scale ticks, text, a depth bar or a colour bar beside it. Resizing the whole canvas to the
network size wastes most of the input and thins every aponeurosis; cropping to the picture first keeps its
detail. The canvas colour is the most common grey level on the image border; a pixel is lit when it differs
from it. A row or column belongs to the picture when enough of its pixels are lit, so isolated ticks and
short labels do not widen the crop, and only the longest run of such rows (columns) is kept, so a colour
bar or a text block apart from the picture is left out. ``CropUltrasoundd`` applies it, or a box the user
gives instead; ``Invertd`` pads outputs back.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import CropForegroundd
from monai.transforms.utils import generate_spatial_bounding_box
from monai.utils import ImageMetaKey

from sonomuscle.data.frames import FRAME_KEY
from sonomuscle.errors import InputError, switch

LIT = 0.03  # difference from the canvas grey level (image scaled to [0, 1]) that marks tissue
MIN_LIT_FRACTION = 0.15  # of a row or column, for it to be part of the picture
MAX_GAP_FRACTION = 0.02  # of the axis length: a gap this short inside the picture (a dark band) is bridged
CANVAS_LEVELS = 64  # grey levels the border is binned into to find the canvas colour


def ultrasound_area(
    image: NdarrayOrTensor, lit: float = LIT, min_lit_fraction: float = MIN_LIT_FRACTION
) -> NdarrayOrTensor:
    """Boolean mask, the shape of ``image`` (channel first, scaled to [0, 1]), of the picture's box.

    Every spatial axis is treated alike: an index along it is kept when at least ``min_lit_fraction`` of
    the pixels in its slice are lit, and the longest run of kept indices (gaps up to ``MAX_GAP_FRACTION``
    bridged) spans the picture. An image with no such slice is kept whole.
    """
    pixels = torch.as_tensor(image).amax(dim=0)
    lit_pixels = ((pixels - _canvas_level(pixels)).abs() > lit).float()
    spatial = lit_pixels.ndim
    keep = torch.ones_like(lit_pixels, dtype=torch.bool)
    for axis in range(spatial):
        along = lit_pixels.mean(dim=tuple(a for a in range(spatial) if a != axis)) >= min_lit_fraction
        if not bool(along.any()):
            keep = torch.ones_like(keep)
            break
        shape = [1] * spatial
        shape[axis] = -1
        keep = keep & _longest_run(along.numpy()).view(shape)
    mask = keep[None].expand(torch.as_tensor(image).shape)
    return mask.numpy() if isinstance(image, np.ndarray) else mask


def picture_rows(array: np.ndarray) -> int:
    """Rows (depth axis, spatial axis 1 of an (X, Y) image) of the ultrasound picture in a screen capture."""
    span = float(array.max() - array.min()) or 1.0
    rows = np.flatnonzero(ultrasound_area(((array - array.min()) / span)[None])[0].any(axis=0))
    return int(rows[-1] - rows[0] + 1)


# the first column of the picture and the one after its last, in the file's pixels (meta keys)
PICTURE_START, PICTURE_END = "picture_start", "picture_end"


class CropUltrasoundd(CropForegroundd):
    """``CropForegroundd`` to the region a case asks for, in this order: the bounding box of its ROI mask
    under ``roi_key`` (loaded; widened by ``roi_margin`` pixels and then dropped from the data, as masks of
    other sizes would not batch), a user's box ``[x, y, width, height]`` under ``box_key`` in pixels of the
    file (x from the left, y from the top, as image viewers show them), else the ultrasound picture
    (:func:`ultrasound_area`), or the whole frame with ``whole_frame``. With ``record_columns`` the columns
    cropped to are recorded in the meta (``PICTURE_START``, ``PICTURE_END``): measures taken "at the
    centre" then mean the picture's."""

    def __init__(
        self,
        keys: KeysCollection,
        source_key: str,
        box_key: str = "crop",
        roi_key: str = "roi",
        roi_margin: int = 0,
        whole_frame: bool | str = False,
        record_columns: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(
            keys,
            source_key,
            select_fn=ultrasound_area,
            allow_smaller=True,
            allow_missing_keys=allow_missing_keys,
        )
        self.box_key = box_key
        self.roi_key = roi_key
        self.roi_margin = roi_margin
        self.whole_frame = switch("--whole_frame", whole_frame)  # "false" from the command line is off
        self.record_columns = record_columns
        self._loop: str | None = None  # the loop whose picture box is kept in _box
        self._box: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0))

    def __call__(self, data: Mapping[Hashable, torch.Tensor], lazy: bool | None = None) -> dict:
        d = dict(data)
        roi = d.pop(self.roi_key, None)
        if roi is not None:
            start, end = roi_corners(roi, d[self.source_key], self.roi_margin)
        elif d.get(self.box_key) is not None:
            start, end = box_corners(d[self.box_key], d[self.source_key])
        elif self.whole_frame:
            return d
        else:
            start, end = self._picture_box(d[self.source_key])
        lazy_ = self.lazy if lazy is None else lazy
        for key, mode in self.key_iterator(d, self.mode):
            d[key] = self.cropper.crop_pad(img=d[key], box_start=start, box_end=end, mode=mode, lazy=lazy_)
            if self.record_columns and isinstance(d[key], MetaTensor):  # for the measures
                d[key].meta[PICTURE_START], d[key].meta[PICTURE_END] = int(start[0]), int(end[0])
        return d

    def _picture_box(self, image: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Start and end of the ultrasound picture. The frames of a loop share their first frame's box: the
        picture does not move within a recording, every frame is then measured on one grid, and the
        search is made once per loop instead of once per frame."""
        meta = image.meta if isinstance(image, MetaTensor) else {}
        loop = str(meta.get(ImageMetaKey.FILENAME_OR_OBJ)) if FRAME_KEY in meta else None
        if loop is None or loop != self._loop:
            self._box = self.cropper.compute_bounding_box(img=image)
            self._loop = loop
        return self._box


def roi_corners(roi: torch.Tensor, image: torch.Tensor, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of a mask's bounding box widened by ``margin`` pixels and kept inside the image."""
    source = roi.meta.get(ImageMetaKey.FILENAME_OR_OBJ) if isinstance(roi, MetaTensor) else None
    if tuple(roi.shape[1:]) != tuple(image.shape[1:]):
        raise InputError(
            source, f"ROI mask {tuple(roi.shape[1:])} differs from its image {tuple(image.shape[1:])}"
        )
    if not bool((torch.as_tensor(roi) > 0).any()):
        raise InputError(source, "ROI mask is empty: nothing to crop to")
    start, end = generate_spatial_bounding_box(roi, margin=margin)
    size = np.asarray(image.shape[1:])
    return np.maximum(np.asarray(start), 0), np.minimum(np.asarray(end), size)


def box_corners(box: Sequence[float], image: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (X, Y) of a ``[x, y, width, height]`` box, checked to lie inside the channel-first image."""
    source = image.meta.get(ImageMetaKey.FILENAME_OR_OBJ) if isinstance(image, MetaTensor) else None
    values = np.asarray(box, dtype=float).ravel()
    size = np.asarray(image.shape[1:])
    if len(values) != 4 or not np.isfinite(values).all() or (values != np.round(values)).any():
        raise InputError(source, f"crop box must be four whole numbers x,y,width,height; got {list(box)}")
    start, extent = values[:2].astype(int), values[2:].astype(int)
    if (start < 0).any() or (extent < 1).any() or (start + extent > size).any():
        raise InputError(
            source,
            f"crop box x,y,width,height = {values.astype(int).tolist()} does not fit the image ({size[0]}×{size[1]} pixels)",
        )
    return start, start + extent


def _canvas_level(pixels: torch.Tensor) -> float:
    """The most common grey level (bin centre) on the border of an image scaled to [0, 1]."""
    border = torch.cat([pixels.movedim(axis, 0)[[0, -1]].flatten() for axis in range(pixels.ndim)])
    counts = torch.bincount(
        (border.clamp(0, 1) * (CANVAS_LEVELS - 1)).round().long(), minlength=CANVAS_LEVELS
    )
    return float(torch.argmax(counts)) / (CANVAS_LEVELS - 1)


def _longest_run(kept: np.ndarray) -> torch.Tensor:
    """``kept`` reduced to its longest run of True, gaps of up to ``MAX_GAP_FRACTION`` of its length bridged."""
    indices = np.flatnonzero(kept)
    breaks = np.flatnonzero(np.diff(indices) > max(1, round(MAX_GAP_FRACTION * len(kept))))
    starts, ends = np.r_[indices[0], indices[breaks + 1]], np.r_[indices[breaks], indices[-1]]
    longest = int(np.argmax(ends - starts))
    run = np.zeros(len(kept), dtype=bool)
    run[starts[longest] : ends[longest] + 1] = True
    return torch.from_numpy(run)
