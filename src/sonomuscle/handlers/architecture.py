"""Ignite handler that turns predicted aponeurosis/fascicle masks into a muscle-architecture CSV.

One row per image (thickness, pennation angle, fascicle length in mm when the image's spacing is known,
px otherwise), rewritten atomically after every batch so the rows kept so far survive a crash. An
image whose masks cannot be measured is recorded with its reason and skipped; the run goes on. With a
``reference_key`` (evaluation), the same measures are taken on the reference masks and the differences
(model − reference) are added to the row. A reference channel that was not annotated (``-1``, e.g. a
fascicle-only image) is taken from the prediction, and ``ref_source`` says so: the pennation angle of the
reference fascicles is then measured against the predicted aponeuroses. ``trained_channels`` (saved with
the model) leaves the measures of a channel that never saw a label empty, with the reason in ``qc``.
``overlay_dir`` adds a colour overlay per image (JPEG) or per cine loop and video (mp4; see
:mod:`sonomuscle.handlers.overlays`). Frames of a loop get ``frame`` and ``time_s`` columns; every row
says where its calibration came from (``calibration``) and how sure the network was of each structure
(``confidence_<structure>``: mean probability inside it, :mod:`sonomuscle.transforms.confidence`).
"""

from __future__ import annotations

import logging
import math
import os
from functools import partial
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor

from sonomuscle.data.frames import FRAME_KEY, TIME_KEY
from sonomuscle.errors import InputError
from sonomuscle.handlers.overlays import VideoOverlays, draw_measures, measured_figure, save_overlay_image
from sonomuscle.handlers.trained_channels import TrainedChannels
from sonomuscle.handlers.volumetric import known_spacing
from sonomuscle.io import atomic_write_rows
from sonomuscle.measures.architecture import ArchitectureResult, measure_architecture
from sonomuscle.transforms.confidence import CONFIDENCE
from sonomuscle.transforms.io import CALIBRATION

MEASURES = ("thickness", "thickness_mean", "pennation_angle", "fascicle_length", "n_fascicles")
CHANNEL_NAMES = ("aponeurosis", "fascicle")
# per channel: the measures of that structure itself, and all that need it (fascicles need aponeuroses)
OWN_MEASURES = (("thickness", "thickness_mean"), ("pennation_angle", "fascicle_length", "n_fascicles"))
NEEDS_CHANNEL = (MEASURES, OWN_MEASURES[1])


class ArchitectureMeasurements:
    """After each iteration, measure every case's channel-first 2-channel binary ``pred_key`` and save the CSV."""

    def __init__(
        self,
        output_dir: str | os.PathLike,
        filename: str = "measurements.csv",
        pred_key: str = "pred",
        reference_key: str | None = None,
        overlay_dir: str | os.PathLike | None = None,
        trained_channels: TrainedChannels | None = None,
    ) -> None:
        self.path = Path(output_dir) / filename
        self.pred_key = pred_key
        self.reference_key = reference_key
        self.overlay_dir = None if overlay_dir is None else Path(overlay_dir)
        self.videos = None if overlay_dir is None else VideoOverlays(Path(overlay_dir))
        self.trained_channels = trained_channels
        self.rows: list[dict] = []
        self.logger = logging.getLogger(__name__)

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, lambda _: self.rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, lambda _: self.report())
        if self.videos is not None:
            engine.add_event_handler(Events.COMPLETED, lambda _: self.videos.close())

    def __call__(self, engine) -> None:
        for case in engine.state.output:
            reference = case[self.reference_key] if self.reference_key else None
            self.rows.append(self.measure(case[self.pred_key], reference))
        atomic_write_rows(self.path, self.rows)

    def report(self) -> None:
        """Where the measurements are, and loudly when lengths are pixels for want of a calibration."""
        if not self.rows:
            return
        self.logger.info(f"{len(self.rows)} result(s) measured → {self.path}")
        in_px = sum(row.get("units") == "px" for row in self.rows)
        if in_px:
            self.logger.warning(
                f"{in_px} of {len(self.rows)} result(s) without calibration: lengths are in PIXELS "
                '(give --spacing MM, e.g. --spacing 0.1 or --spacing "[0.1,0.1]", or --depth MM)'
            )

    def measure(self, pred: torch.Tensor, reference: torch.Tensor | None = None) -> dict:
        """One CSV row for one case; NaNs and an ``error`` when the masks cannot be measured."""
        meta = pred.meta if isinstance(pred, MetaTensor) else {}
        source = str(meta.get("filename_or_obj", ""))
        row: dict = {"image": source}
        if FRAME_KEY in meta:
            row.update(frame=int(meta[FRAME_KEY]), time_s=round(float(meta[TIME_KEY]), 4))
        row["calibration"] = meta.get(CALIBRATION, "")
        for name, confidence in zip(CHANNEL_NAMES, meta.get(CONFIDENCE, ()), strict=False):
            row[f"confidence_{name}"] = round(float(confidence), 3)
        spacing = known_spacing(pred)
        masks = _binary(pred)
        try:
            measured, result = _measures(masks, spacing)
            row.update(self._trusted(measured))
            if reference is not None:
                reference, borrowed = _fill_unannotated(reference, pred)
                ref, _ = _measures(_binary(reference), spacing)
                for channel in borrowed:  # compared with itself: no reference for these
                    ref.update(dict.fromkeys(OWN_MEASURES[channel], math.nan))
                row.update({f"ref_{k}": v for k, v in ref.items()})
                row["ref_source"] = "; ".join(f"{CHANNEL_NAMES[c]} from prediction" for c in borrowed)
                row.update({f"error_{k}": row[k] - ref[k] for k in MEASURES})
        except InputError as err:
            self.logger.warning("not measured: %s", err)
            return {**row, **{k: math.nan for k in MEASURES}, "error": str(err)}
        row["error"] = ""
        if self.overlay_dir is not None and source:
            figure = measured_figure(result, row, spacing, width=masks.shape[1])
            annotate = partial(draw_measures, figure=figure)
            try:
                if FRAME_KEY in meta:
                    self.videos.add(Path(source), meta, masks, annotate)
                else:
                    save_overlay_image(Path(source), masks, self.overlay_dir, annotate)
            except InputError as err:  # the measures stand; only the picture is missing
                self.logger.warning("no overlay: %s", err)
                row["error"] = f"no overlay: {err}"
        return row

    def _trusted(self, measures: dict) -> dict:
        """``measures`` with those of untrained channels set to NaN and the reason added to ``qc``."""
        untrained = self.trained_channels.untrained() if self.trained_channels is not None else []
        for name in untrained:
            channel = CHANNEL_NAMES.index(name)
            measures.update(dict.fromkeys(NEEDS_CHANNEL[channel], math.nan), fascicle_direction="")
            reason = f"{name} channel never trained: its measures are left empty"
            measures["qc"] = "; ".join(filter(None, [measures["qc"], reason]))
        return measures


def _fill_unannotated(reference: torch.Tensor, pred: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """The reference with its wholly unannotated channels (``-1``) taken from ``pred``, and which they are."""
    borrowed = [c for c in range(reference.shape[0]) if bool((reference[c] < 0).all())]
    if not borrowed:
        return reference, []
    filled = reference.clone()
    for c in borrowed:
        filled[c] = pred[c].to(filled.dtype)
    return filled, borrowed


def _binary(masks: torch.Tensor) -> np.ndarray:
    return np.asarray(masks.detach().cpu()) > 0.5


def _measures(masks: np.ndarray, spacing: tuple[float, float] | None) -> tuple[dict, ArchitectureResult]:
    """Architecture measures of a ``(2, X, Y)`` boolean aponeurosis/fascicle mask pair, as a row and as the
    result."""
    result = measure_architecture(masks[0], masks[1], spacing)
    row = result.as_row()
    keys = (*MEASURES, "fascicle_direction", "units", "qc")
    return {k: row[k] for k in keys}, result
