"""Inference cases as a stream: images one by one, cine loops and videos frame by frame, bad ones skipped.

MONAI's ``Dataset`` stops a whole run at the first case its transform cannot load, so a batch job used to
read every file once in advance to weed out bad ones. Streaming instead reads each file once, inside the
pipeline: a case (or frame) whose loading or checks raise an :class:`~sonomuscle.errors.InputError` is
reported on one line and skipped, and nothing else is lost. Videos are decoded frame by frame, never
held whole in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import torch
from monai.data import IterableDataset
from monai.utils import ImageMetaKey
from torch.utils.data import get_worker_info

from sonomuscle.data.frames import FRAME_KEY, VIDEO_SUFFIXES, is_cine, read_frames
from sonomuscle.data.readers import SUPPORTED_SUFFIXES, suffix_of
from sonomuscle.distributed import rank_share
from sonomuscle.errors import InputError, input_error_of

logger = logging.getLogger(__name__)


def input_files(folder: Path) -> list[Path]:
    """The files in ``folder`` the stream takes (images, volumes, DICOM, videos), sorted by name."""
    return sorted(
        f for f in folder.iterdir() if f.is_file() and suffix_of(f) in SUPPORTED_SUFFIXES + VIDEO_SUFFIXES
    )


class InferenceStream(IterableDataset):
    """``transform`` applied to each case of ``data`` (``{"image": path, ...}``), yielded in lists of up to
    ``batch_size`` for the DataLoader to collate (use it with ``batch_size=None``); the first lists hold 1, 2,
    4, … cases, so that the network and what follows it start without waiting for a full batch (a 12-image
    folder took 0.76 instead of 0.98 s through ``sonomuscle measure``). A list holds still images
    or frames of one loop, never both: collation keeps only the metadata keys of a batch's first item, and a
    frame's index and time would be lost beside a still image. Its tensors have one shape under each key.
    With ``frames`` (2D bundles) a cine case is expanded into every ``step``-th frame, the frame replacing
    the path under ``"image"`` and the rest of the entry kept; 3D bundles read a multi-frame DICOM whole, as
    a volume. With ``shard`` (``multi_gpu_inference.json``) each ``torchrun`` rank takes its contiguous share of
    the cases (:func:`sonomuscle.distributed.rank_share`): a loop's frames stay with one rank."""

    def __init__(
        self,
        data: Sequence[Mapping],
        transform: Callable,
        frames: bool = True,
        step: int = 1,
        batch_size: int = 1,
        shard: bool = False,
    ) -> None:
        super().__init__(data=rank_share(data) if shard else data, transform=transform)
        if step < 1:
            raise InputError(None, f"frame step must be ≥ 1, got {step}")
        self.frames = frames
        self.step = step
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list]:
        batch: list = []
        size = 1  # the first lists grow 1, 2, 4, … so the network and what follows it start at once
        for item in self._prepared():
            if batch and (len(batch) == size or not _batchable(item, batch[-1])):
                yield batch
                batch, size = [], min(2 * size, self.batch_size)
            batch.append(item)
        if batch:
            yield batch

    def _prepared(self) -> Iterator:
        worker = get_worker_info()  # DataLoader workers share the cases out instead of each yielding all
        cases = self.data if worker is None else self.data[worker.id :: worker.num_workers]
        for case in cases:
            for item in self._items(case):
                try:
                    yield self.transform(item)
                except Exception as err:
                    reason = input_error_of(err)
                    if reason is None:
                        raise
                    logger.warning("skipped %s", reason)

    def _items(self, case: Mapping) -> Iterator[dict]:
        if not (self.frames and is_cine(case["image"])):
            yield dict(case)
            return
        try:
            for frame in read_frames(case["image"], self.step):
                yield {**case, "image": frame}
        except InputError as err:
            logger.warning("skipped %s", err)


def _batchable(item: Mapping, previous: Mapping) -> bool:
    """Whether two prepared items collate into one batch: both still images or frames of one loop, and
    tensors of one shape under each key (an image kept at its own size, such as the picture an overlay
    is drawn on, differs between files)."""
    if _loop_of(item) != _loop_of(previous):
        return False
    return all(
        not isinstance(value, torch.Tensor) or getattr(previous.get(key), "shape", None) == value.shape
        for key, value in item.items()
    )


def _loop_of(item: Mapping) -> str | None:
    """The file a prepared frame came from; None for a still image."""
    meta = getattr(item["image"], "meta", {})
    return str(meta.get(ImageMetaKey.FILENAME_OR_OBJ)) if FRAME_KEY in meta else None
