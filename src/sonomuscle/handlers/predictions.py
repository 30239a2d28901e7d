"""Ignite handler that writes an image-level model's predictions, one row per image, as ``predictions.csv``.

Classification rows hold the predicted class and every class's probability (the postprocessing's softmax);
regression rows hold each target in its units. The table is rewritten atomically after every batch, so
what is predicted survives a crash, and ``sonomuscle.evaluation.imagelevel`` reads it back against the
datalist's truth.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from monai.data import MetaTensor
from monai.utils import ImageMetaKey

from sonomuscle.io import atomic_write_rows
from sonomuscle.targets import OutputNames

PROBABILITY_PREFIX = "probability_"


class ImagePredictions:
    """After each iteration, add each case's ``pred`` (probabilities, or targets in units) to the table."""

    def __init__(
        self,
        output_dir: str | os.PathLike,
        outputs: OutputNames,
        filename: str = "predictions.csv",
        pred_key: str = "pred",
        image_key: str = "image",
    ) -> None:
        self.path = Path(output_dir) / filename
        self.outputs = outputs
        self.pred_key = pred_key
        self.image_key = image_key
        self.rows: list[dict] = []
        self.logger = logging.getLogger(__name__)

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, lambda _: self.rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(
            Events.COMPLETED, lambda _: self.logger.info(f"{len(self.rows)} image(s) predicted → {self.path}")
        )

    def __call__(self, engine) -> None:
        for case in engine.state.output:
            self.rows.append({"image": _source(case[self.image_key]), **self.row(case[self.pred_key])})
        atomic_write_rows(self.path, self.rows)

    def row(self, pred) -> dict:
        values = pred.detach().cpu().reshape(-1).tolist()
        names = self.outputs.names
        if self.outputs.regression:
            return dict(zip(names, values, strict=True))
        best = max(range(len(values)), key=values.__getitem__)
        probabilities = {PROBABILITY_PREFIX + name: p for name, p in zip(names, values, strict=True)}
        return {"class": names[best], **probabilities}


def _source(image) -> str:
    return str(image.meta.get(ImageMetaKey.FILENAME_OR_OBJ, "")) if isinstance(image, MetaTensor) else ""
