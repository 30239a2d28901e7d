"""Ignite handler that writes an image-level model's predictions, one row per image, as ``predictions.csv``.

Classification rows hold the predicted class and every class's probability (the postprocessing's softmax);
regression rows hold each target in its units. Rows are appended as they come
(:class:`~sonomuscle.handlers.results.ResultsHandler`), so what is predicted survives a crash, and
``sonomuscle.evaluation.imagelevel`` reads the table against the datalist's truth.
"""

from __future__ import annotations

import logging
import os

from monai.data import MetaTensor
from monai.utils import ImageMetaKey

from sonomuscle.handlers.results import ResultsHandler
from sonomuscle.targets import OutputNames

PROBABILITY_PREFIX = "probability_"
logger = logging.getLogger(__name__)


class ImagePredictions(ResultsHandler):
    """After each iteration, add each case's ``pred`` (probabilities, or targets in units) to the table."""

    def __init__(
        self,
        output_dir: str | os.PathLike,
        outputs: OutputNames,
        filename: str = "predictions.csv",
        pred_key: str = "pred",
        image_key: str = "image",
    ) -> None:
        super().__init__(output_dir, filename)
        self.outputs = outputs
        self.pred_key = pred_key
        self.image_key = image_key

    def rows(self, engine) -> list[dict]:
        return [
            {"image": _source(case[self.image_key]), **self.row(case[self.pred_key])}
            for case in engine.state.output
        ]

    def report(self) -> None:
        logger.info(f"{self.table.count} image(s) predicted → {self.path}")

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
