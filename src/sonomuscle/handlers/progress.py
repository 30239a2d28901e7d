"""What a user reads while a bundle trains and evaluates: scores, and where the best model went.

MONAI's ``StatsHandler`` logs every iteration (hundreds of lines in a short run) and a metric no validation
image could be scored on as ``0.0000``. Here a metric reads "not scored" where nothing was annotated and
carries the unit of each distance (:func:`metric_texts`, also in the learning curve's line per epoch); the
best model's file is named at the end of training, and an evaluation's scores fit on one line.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from ignite.engine import Engine, Events

logger = logging.getLogger("sonomuscle.training")


def metric_texts(validator: Engine) -> list[str]:
    """``name value [unit]`` per scalar metric of the validator's last run; "not scored" without any case."""
    units = getattr(validator.state, "metric_units", {})
    details = getattr(validator.state, "metric_details", {})
    texts = []
    for name, value in validator.state.metrics.items():
        if not isinstance(value, (int, float)) and not (torch.is_tensor(value) and value.numel() == 1):
            continue
        label = name.removeprefix("val_")
        per_case = details.get(name)
        if per_case is not None and not torch.isfinite(torch.as_tensor(per_case, dtype=torch.float)).any():
            texts.append(f"{label} not scored (no case annotated)")
            continue
        unit = f" {units[name]}" if name in units else ""
        texts.append(f"{label} {float(value):.4g}{unit}")
    return texts


class EvaluationSummary:
    """After an evaluation: its scores on one line ("not scored", units as in training) and where they are."""

    def __init__(self, output_dir: str | os.PathLike) -> None:
        self.output_dir = Path(output_dir)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        logger.info(f"evaluation: {', '.join(metric_texts(engine))}; per-image scores in {self.output_dir}")


class BestModelNotice:
    """At the end of training: which file holds the best model, its score, and how inference uses it."""

    def __init__(self, model_path: str | os.PathLike, validator: Engine | None = None) -> None:
        self.model_path = Path(model_path).resolve()
        self.validator = validator

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if not self.model_path.is_file():
            logger.warning(f"no model was saved to {self.model_path}: validation never ran")
            return
        state = self.validator.state if self.validator is not None else None
        score = ""
        if state is not None and state.best_metric_epoch > 0:
            score = f" ({state.key_metric_name} {state.best_metric:.4f} at epoch {state.best_metric_epoch})"
        logger.info(f"best model{score}: {self.model_path}")
        logger.info(f"use it with: --model_path {self.model_path}")
