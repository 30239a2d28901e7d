"""Ignite handler that turns predicted label maps of named structures into a cross-sectional-area table.

One row per image and structure (area, perimeter, echo intensity; :mod:`sonomuscle.measures.csa`), in mm
when the image's spacing is known and px otherwise, appended as they come so the rows kept so far survive
a crash (:class:`~sonomuscle.handlers.results.ResultsHandler`). Echo intensity needs the original grey
values, not the network's scaled and resized input, so each image file is read once more here; the same array serves the overlay. With
``mask_dir`` each structure is also saved as a 0/255 PNG (``<image>_<structure>.png``), and with
``overlay_dir`` a colour overlay with the values per structure (``<image>_overlay.jpg``); ``label_map_dir``
(where the label maps are saved) gets the class names as ``classes.json``, so ``sonomuscle evaluate``
names the structures as the model does. An image that cannot be measured is reported and recorded with
its reason; the run goes on.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from itertools import cycle
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from PIL import Image

from sonomuscle.classes import write_classes_file
from sonomuscle.data.readers import load_image, stem_of
from sonomuscle.errors import InputError
from sonomuscle.handlers.overlays import STRUCTURE_COLOURS, draw_caption, save_overlay_image
from sonomuscle.handlers.results import ResultsHandler
from sonomuscle.io import atomic_write_with
from sonomuscle.measures.csa import grey_range, structure_measures
from sonomuscle.transforms.io import CALIBRATION, known_spacing

logger = logging.getLogger(__name__)
MEASURES = ("area", "area_cm2", "perimeter", "echo_intensity", "echo_intensity_sd")


class StructureMeasurements(ResultsHandler):
    """After each iteration, measure every case's predicted label map (``1, X, Y``; class values) and save
    the CSV; ``classes`` names the values."""

    def __init__(
        self,
        output_dir: str | os.PathLike,
        classes: Mapping[str, int],
        filename: str = "measurements.csv",
        pred_key: str = "pred",
        mask_dir: str | os.PathLike | None = None,
        overlay_dir: str | os.PathLike | None = None,
        label_map_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(output_dir, filename)
        self.classes = dict(classes)
        self.pred_key = pred_key
        self.mask_dir = None if mask_dir is None else Path(mask_dir)
        self.overlay_dir = None if overlay_dir is None else Path(overlay_dir)
        self.label_map_dir = None if label_map_dir is None else Path(label_map_dir)
        self.colours = [colour for colour, _ in zip(cycle(STRUCTURE_COLOURS), self.classes)]
        self.images = self.in_px = 0

    def started(self, engine) -> None:
        super().started(engine)
        self.images = self.in_px = 0
        if self.label_map_dir is not None:
            write_classes_file(self.label_map_dir, self.classes)

    def rows(self, engine) -> list[dict]:
        rows = []
        for case in engine.state.output:
            measured = self.measure(case[self.pred_key])
            self.images += 1
            self.in_px += any(row.get("units") == "px" for row in measured)
            rows += measured
        return rows

    def report(self) -> None:
        """Where the table is, and loudly when sizes are pixels for want of a calibration."""
        logger.info(f"{self.images} image(s), {self.table.count} structure row(s) measured → {self.path}")
        if self.in_px:
            logger.warning(
                f"{self.in_px} of {self.images} image(s) without calibration: areas are in PIXELS² "
                '(give --spacing MM, e.g. --spacing 0.1 or --spacing "[0.1,0.1]", or --depth MM)'
            )

    def measure(self, pred: torch.Tensor) -> list[dict]:
        """The rows of one image; one row with the ``error`` when it cannot be measured."""
        meta = pred.meta if isinstance(pred, MetaTensor) else {}
        source = str(meta.get("filename_or_obj", ""))
        spacing = known_spacing(pred)
        calibration = {"units": "px" if spacing is None else "mm", "calibration": meta.get(CALIBRATION, "")}
        label_map = np.asarray(pred.detach().cpu()[0]).round().astype(np.int16)
        try:
            grey, _ = load_image(source)
            rows = structure_measures(grey, label_map, self.classes, spacing)
        except InputError as err:
            logger.warning("not measured: %s", err)
            return [{"image": source, **dict.fromkeys(MEASURES, math.nan), **calibration, "error": str(err)}]
        error = self._save_pictures(Path(source), grey, label_map, rows)
        scale = grey_range(grey)
        return [
            {
                "image": source,
                "structure": row["structure"],
                "value": self.classes[row["structure"]],
                **{k: row[k] for k in MEASURES},
                "grey_range": scale,
                **calibration,
                "error": error,
            }
            for row in rows
        ]

    def _save_pictures(self, source: Path, grey: np.ndarray, label_map: np.ndarray, rows: list[dict]) -> str:
        """Per-structure masks and the overlay; the problem as text when they could not be written."""
        masks = np.stack([label_map == value for value in self.classes.values()])
        try:
            if self.mask_dir is not None:
                for name, mask in zip(self.classes, masks, strict=True):
                    picture = Image.fromarray(np.ascontiguousarray(mask.T.astype(np.uint8) * 255))
                    atomic_write_with(
                        self.mask_dir / f"{stem_of(source)}_{name}.png",
                        lambda p, im=picture: im.save(p, "PNG"),
                    )
            if self.overlay_dir is not None:
                lines = [(_legend(row), colour) for row, colour in zip(rows, self.colours, strict=True)]
                save_overlay_image(
                    source, masks, self.overlay_dir, lambda p: draw_caption(p, lines), grey, self.colours
                )
        except OSError as err:  # the measures stand; only the pictures are missing
            logger.warning("no pictures for %s: %s", source, err)
            return f"no pictures: {err}"
        return ""


def _legend(row: dict) -> str:
    """One overlay line, short enough for a 256-pixel image: area, perimeter (P) and echo intensity (EI)."""
    if row["area"] == 0:
        return f"{row['structure']}: not found"
    # the overlay font has no superscripts
    if math.isnan(row["area_cm2"]):
        size, units = f"{row['area']:.0f} px2", "px"
    else:
        size, units = f"{row['area_cm2']:.2f} cm2", "mm"
    return f"{row['structure']}: {size}, P {row['perimeter']:.1f} {units}, EI {row['echo_intensity']:.0f}"
