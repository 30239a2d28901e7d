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

from monai.data import IterableDataset
from torch.utils.data import get_worker_info

from sonomuscle.data.frames import is_cine, read_frames
from sonomuscle.errors import InputError

logger = logging.getLogger(__name__)


class InferenceStream(IterableDataset):
    """``transform`` applied to each case of ``data`` (``{"image": path, ...}``). With ``frames`` (2D
    bundles) a cine case is expanded into every ``step``-th frame, the frame replacing the path under
    ``"image"`` and the rest of the entry kept; 3D bundles read a multi-frame DICOM whole, as a volume."""

    def __init__(
        self, data: Sequence[Mapping], transform: Callable, frames: bool = True, step: int = 1
    ) -> None:
        super().__init__(data=data, transform=transform)
        if step < 1:
            raise InputError(None, f"frame step must be ≥ 1, got {step}")
        self.frames = frames
        self.step = step

    def __iter__(self) -> Iterator:
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


def input_error_of(err: BaseException) -> InputError | None:
    """The InputError behind ``err``, through MONAI's "applying transform" wrappers; None for other errors."""
    while err is not None:
        if isinstance(err, InputError):
            return err
        err = err.__cause__ or err.__context__
    return None
