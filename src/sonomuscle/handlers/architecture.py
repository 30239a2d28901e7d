"""Ignite handler that turns predicted aponeurosis/fascicle masks into a muscle-architecture CSV.

One row per image (thickness, pennation angle, fascicle length in mm when the image's spacing is known,
px otherwise), appended as they come so the rows kept so far survive a crash
(:class:`~sonomuscle.handlers.results.ResultsHandler`). An image whose masks cannot be measured is
recorded with its reason and skipped; the run goes on. With a
``reference_key`` (evaluation), the same measures are taken on the reference masks and the differences
(model − reference) are added to the row. A reference channel that was not annotated (``-1``, e.g. a
fascicle-only image) is taken from the prediction, and ``ref_source`` says so: the pennation angle of the
reference fascicles is then measured against the predicted aponeuroses. ``trained_channels`` (saved with
the model) leaves the measures of a channel that never saw a label empty, with the reason in ``qc``.
``overlay_dir`` adds a colour overlay per image (JPEG) or per cine loop and video (mp4; see
:mod:`sonomuscle.handlers.overlays`), drawn on the grey image the batch carries under ``picture_key`` (the
loaded image before scaling and resizing), else on the file read again; ``mask_writer`` writes a still
image's masks. Frames of a loop get ``frame`` and ``time_s`` columns; every row says where its calibration
came from (``calibration``) and how sure the network was of each structure (``confidence_<structure>``:
mean probability inside it, :mod:`sonomuscle.transforms.confidence`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.utils import ImageMetaKey

from sonomuscle.data.frames import FRAME_KEY, RATE_KEY, TIME_KEY
from sonomuscle.errors import InputError, switch
from sonomuscle.handlers.overlays import VideoOverlays, draw_measures, measured_figure, save_overlay_image
from sonomuscle.handlers.results import ResultsHandler
from sonomuscle.handlers.trained_channels import TrainedChannels
from sonomuscle.measures.architecture import ArchitectureResult, LateralPosition, measure_architecture
from sonomuscle.transforms.confidence import CONFIDENCE
from sonomuscle.transforms.crop import PICTURE_END, PICTURE_START
from sonomuscle.transforms.io import CALIBRATION, known_spacing

CHANNEL_NAMES = ("aponeurosis", "fascicle")
# per channel: the measures of that structure itself, and all that need it (fascicles need aponeuroses)
OWN_MEASURES = (
    ("thickness", "thickness_mean", "thickness_vertical", "thickness_at", "thickness_vertical_at"),
    (
        "pennation_angle",
        "pennation_angle_superficial",
        "pennation_angle_spread",
        "fascicle_length",
        "n_fascicles",
    ),
)
MEASURES = OWN_MEASURES[0] + OWN_MEASURES[1]
NEEDS_CHANNEL = (MEASURES, OWN_MEASURES[1])
# what a row and an overlay need of a prediction's meta
CASE_META = (
    ImageMetaKey.FILENAME_OR_OBJ,
    FRAME_KEY,
    TIME_KEY,
    RATE_KEY,
    CALIBRATION,
    CONFIDENCE,
    PICTURE_START,
    PICTURE_END,
)

logger = logging.getLogger(__name__)


class ArchitectureMeasurements(ResultsHandler):
    """After each iteration, measure every case's channel-first 2-channel binary ``pred_key`` and save the CSV.

    With ``background``, a batch is measured and drawn in a second process, in order, while the network
    works on the next batch, and the network leaves that process one CPU core: on two cores the
    measures and overlays took as long as the network itself, one after the other. Only plain arrays
    travel there (:class:`Case`).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        filename: str = "measurements.csv",
        pred_key: str = "pred",
        reference_key: str | None = None,
        overlay_dir: str | os.PathLike | None = None,
        trained_channels: TrainedChannels | None = None,
        picture_key: str | None = None,
        mask_writer: Callable | None = None,
        background: bool = False,
        thickness_at: str | float | None = None,
    ) -> None:
        super().__init__(output_dir, filename)
        self.pred_key = pred_key
        self.reference_key = reference_key
        self.overlay_dir = None if overlay_dir is None else Path(overlay_dir)
        self.trained_channels = trained_channels
        self.picture_key = picture_key
        self.background = switch("--measure_in_background", background)  # "false" from the command line
        self.in_px = 0
        position = None if thickness_at in (None, "") else LateralPosition.parse(thickness_at)
        self._measurer = CaseMeasurer(self.overlay_dir, mask_writer, position)
        self._worker: Worker | None = None

    def attach(self, engine) -> None:
        from ignite.engine import Events

        super().attach(engine)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._failed)

    def started(self, engine) -> None:
        super().started(engine)
        self.in_px = 0

    def rows(self, engine) -> list[dict]:
        """The rows measured so far: this batch's, or in the background the previous batch's."""
        outputs = engine.state.output
        batch = engine.state.batch if self.picture_key and self.overlay_dir else [{}] * len(outputs)
        cases = [
            case_of(
                out[self.pred_key],
                out[self.reference_key] if self.reference_key else None,
                item.get(self.picture_key),
            )
            for out, item in zip(outputs, batch, strict=True)
        ]
        if not self.background:
            return self._counted([self._measurer.measure(case, self._untrained()) for case in cases])
        if self._worker is None:
            self._worker = Worker(self._measurer)
        return self._counted(self._worker.swap(self._worker.submit(cases, self._untrained())))

    def completed(self) -> None:
        """Collect the last batch, finish the videos and say where the table is."""
        if self._worker is not None:
            self.table.add(self._counted(self._worker.swap(None)))
            self._stop_worker()
        self._measurer.close()
        super().completed()

    def report(self) -> None:
        """Where the measurements are, and loudly when lengths are pixels for want of a calibration."""
        if not self.table.count:
            return
        logger.info(f"{self.table.count} result(s) measured → {self.path}")
        if self.in_px:
            logger.warning(
                f"{self.in_px} of {self.table.count} result(s) without calibration: lengths are in PIXELS "
                '(give --spacing MM, e.g. --spacing 0.1 or --spacing "[0.1,0.1]", or --depth MM)'
            )

    def measure(self, pred: torch.Tensor, reference: torch.Tensor | None = None) -> dict:
        """One CSV row for one case, measured here; NaNs and an ``error`` when the masks cannot be measured."""
        return self._measurer.measure(case_of(pred, reference), self._untrained())

    def _untrained(self) -> list[str]:
        return self.trained_channels.untrained() if self.trained_channels is not None else []

    def _counted(self, rows: list[dict]) -> list[dict]:
        self.in_px += sum(row.get("units") == "px" for row in rows)
        return rows

    def _failed(self, engine, err: BaseException) -> None:
        """The rows of the batch measured in the background are written too (if that process is sound), the
        process ends, and the run's own error goes on (ignite re-raises it only through such handlers)."""
        if self._worker is not None:
            with contextlib.suppress(Exception):
                self.table.add(self._counted(self._worker.swap(None)))
            with contextlib.suppress(Exception):
                self._stop_worker()
        raise err

    def _stop_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()


@dataclass
class Case:
    """One result to measure: its meta (``CASE_META``), spacing (None: pixels), ``(2, X, Y)`` boolean masks,
    the reference masks (evaluation) and the grey picture to draw on (None: read from the file)."""

    meta: dict
    spacing: tuple[float, float] | None
    masks: np.ndarray
    reference: np.ndarray | None = None
    grey: np.ndarray | None = None


def case_of(
    pred: torch.Tensor, reference: torch.Tensor | None = None, picture: torch.Tensor | None = None
) -> Case:
    """What measuring a postprocessed ``pred`` needs, as plain arrays."""
    meta = pred.meta if isinstance(pred, MetaTensor) else {}
    return Case(
        meta={k: meta[k] for k in CASE_META if k in meta},
        spacing=known_spacing(pred),
        masks=_binary(pred),
        reference=None if reference is None else np.asarray(reference.detach().cpu(), dtype=np.float32),
        grey=None if picture is None else np.asarray(picture.detach().cpu())[0],
    )


class CaseMeasurer:
    """Measures cases, draws their overlays (JPEG per image, mp4 per loop, with ``overlay_dir``) and gives a
    still image's masks to ``mask_writer`` (a transform of ``pred_<structure>`` channel-first masks, such as
    MONAI's ``SaveImaged``; frames are not written one by one, their video shows them). ``thickness_at``: where
    the user's own thickness is measured."""

    def __init__(
        self,
        overlay_dir: Path | None,
        mask_writer: Callable | None = None,
        thickness_at: LateralPosition | None = None,
    ) -> None:
        self.overlay_dir = overlay_dir
        self.videos = None if overlay_dir is None else VideoOverlays(overlay_dir)
        self.mask_writer = mask_writer
        self.thickness_at = thickness_at

    def measure(self, case: Case, untrained: Sequence[str] = ()) -> dict:
        """One CSV row; measures of ``untrained`` channels are left empty with the reason in ``qc``."""
        meta = case.meta
        source = str(meta.get(ImageMetaKey.FILENAME_OR_OBJ, ""))
        row: dict = {"image": source}
        if FRAME_KEY in meta:
            row.update(frame=int(meta[FRAME_KEY]), time_s=round(float(meta[TIME_KEY]), 4))
        row["calibration"] = meta.get(CALIBRATION, "")
        for name, confidence in zip(CHANNEL_NAMES, meta.get(CONFIDENCE, ()), strict=False):
            row[f"confidence_{name}"] = round(float(confidence), 3)
        try:
            settings = (case.spacing, self.thickness_at, _picture(meta), CHANNEL_NAMES[1] not in untrained)
            measured, result = _measures(case.masks, *settings)
            row.update(_trusted(measured, untrained))
            if case.reference is not None:
                reference, borrowed = _fill_unannotated(case.reference, case.masks)
                ref, _ = _measures(reference > 0.5, *settings)
                for channel in borrowed:  # compared with itself: no reference for these
                    ref.update(dict.fromkeys(OWN_MEASURES[channel], math.nan))
                row.update({f"ref_{k}": v for k, v in ref.items()})
                row["ref_source"] = "; ".join(f"{CHANNEL_NAMES[c]} from prediction" for c in borrowed)
                row.update({f"error_{k}": row[k] - ref[k] for k in MEASURES})
        except InputError as err:
            logger.warning("not measured: %s", err)
            return {**row, **{k: math.nan for k in MEASURES}, "error": str(err)}
        row["error"] = ""
        if self.mask_writer is not None and source and FRAME_KEY not in meta:
            self.mask_writer(_structure_masks(case.masks, source))
        if self.overlay_dir is not None and source:
            figure = measured_figure(result, row, case.spacing, width=case.masks.shape[1])
            annotate = partial(draw_measures, figure=figure)
            try:
                if FRAME_KEY in meta:
                    self.videos.add(Path(source), meta, case.masks, annotate, case.grey)
                else:
                    save_overlay_image(Path(source), case.masks, self.overlay_dir, annotate, case.grey)
            except InputError as err:  # the measures stand; only the picture is missing
                logger.warning("no overlay: %s", err)
                row["error"] = f"no overlay: {err}"
        return row

    def close(self) -> None:
        """Finish the video being drawn."""
        if self.videos is not None:
            self.videos.close()


class Worker:
    """A process that measures batches of cases one at a time, in order, beside the caller."""

    def __init__(self, measurer: CaseMeasurer) -> None:
        self.threads = torch.get_num_threads()
        torch.set_num_threads(max(1, self.threads - 1))  # one core is the worker's
        self.pool = ProcessPoolExecutor(1, initializer=_start_worker, initargs=(measurer,))
        self.pending: Future | None = None

    def submit(self, cases: list[Case], untrained: list[str]) -> Future:
        return self.pool.submit(_measure_cases, cases, untrained)

    def swap(self, pending: Future | None) -> list[dict]:
        """The rows of the batch in the process (after waiting for it); ``pending`` becomes that batch."""
        rows = self.pending.result() if self.pending is not None else []
        self.pending = pending
        return rows

    def stop(self) -> None:
        """Finish the video being drawn there and end the process; the network gets its core back."""
        try:
            self.pool.submit(_close_measurer).result()
        finally:
            self.pool.shutdown(cancel_futures=True)
            torch.set_num_threads(self.threads)


_measurer: CaseMeasurer | None = None  # the worker process's own


def _start_worker(measurer: CaseMeasurer) -> None:
    global _measurer
    torch.set_num_threads(1)  # OpenMP does not survive a fork; one thread never enters it
    _measurer = measurer


def _measure_cases(cases: list[Case], untrained: list[str]) -> list[dict]:
    return [_measurer.measure(case, untrained) for case in cases]


def _close_measurer() -> None:
    _measurer.close()


def _trusted(measures: dict, untrained: Sequence[str]) -> dict:
    """``measures`` with those of untrained channels set to NaN and the reason added to ``qc``."""
    for name in untrained:
        channel = CHANNEL_NAMES.index(name)
        measures.update(dict.fromkeys(NEEDS_CHANNEL[channel], math.nan), fascicle_direction="")
        reason = f"{name} channel never trained: its measures are left empty"
        measures["qc"] = "; ".join(filter(None, [measures["qc"], reason]))
    return measures


def _fill_unannotated(reference: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """The reference with its wholly unannotated channels (``-1``) taken from ``pred``, and which they are."""
    borrowed = [c for c in range(reference.shape[0]) if bool((reference[c] < 0).all())]
    if not borrowed:
        return reference, []
    filled = reference.copy()
    for c in borrowed:
        filled[c] = pred[c]
    return filled, borrowed


def _structure_masks(masks: np.ndarray, source: str) -> dict[str, MetaTensor]:
    """``pred_<structure>``: each structure's ``(1, X, Y)`` mask, named after its image for the writers."""
    meta = {ImageMetaKey.FILENAME_OR_OBJ: source}
    return {
        f"pred_{name}": MetaTensor(torch.from_numpy(masks[c : c + 1]), meta=dict(meta))
        for c, name in enumerate(CHANNEL_NAMES)
    }


def _binary(masks: torch.Tensor) -> np.ndarray:
    return np.asarray(masks.detach().cpu()) > 0.5


def _picture(meta: dict) -> tuple[int, int] | None:
    """The ultrasound picture's columns in the file, where the crop recorded them."""
    if PICTURE_START not in meta:
        return None
    return int(meta[PICTURE_START]), int(meta[PICTURE_END])


def _measures(
    masks: np.ndarray,
    spacing: tuple[float, float] | None,
    thickness_at: LateralPosition | None = None,
    picture: tuple[int, int] | None = None,
    fascicles: bool = True,
) -> tuple[dict, ArchitectureResult]:
    """Architecture measures of a ``(2, X, Y)`` boolean aponeurosis/fascicle mask pair, as a row and as the
    result; without ``fascicles`` (a channel never trained: noise) the aponeuroses are found from their own
    mask alone."""
    result = measure_architecture(masks[0], masks[1] if fascicles else None, spacing, thickness_at, picture)
    row = result.as_row()
    keys = (*MEASURES, "fascicle_direction", "units", "qc")
    return {k: row[k] for k in keys}, result
