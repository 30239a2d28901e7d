"""Ignite handler that keeps a training run's learning curve as a CSV (one row per epoch), ready to plot,
and logs each row as the epoch's one summary line.

TensorBoard holds the same numbers, but a CSV beside the checkpoints is what a user (or the report) plots
without extra tools. A resumed run keeps the earlier rows.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
import torch

from sonomuscle.handlers.progress import logger, metric_texts
from sonomuscle.io import atomic_write_with


class LearningCurve:
    """Mean training loss per epoch plus the validator's latest metrics, written to ``output_dir/filename``
    and logged as one line ("not scored" for a structure no validation image annotates, distances with units)."""

    def __init__(
        self, output_dir: str | os.PathLike, validator=None, filename: str = "learning_curve.csv"
    ) -> None:
        self.path = Path(output_dir) / filename
        self.validator = validator
        self.rows: list[dict] = []
        self.losses: list[float] = []
        self.epoch_start = time.perf_counter()

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch)

    def _started(self, engine) -> None:
        """Pick up the rows of a previous run; ``_epoch`` drops those a resumed run redoes."""
        self.rows = pd.read_csv(self.path).to_dict("records") if self.path.is_file() else []

    def _epoch_started(self, engine) -> None:
        self.epoch_start = time.perf_counter()

    def _iteration(self, engine) -> None:
        output = engine.state.output
        loss = output[0]["loss"] if isinstance(output, list) else output["loss"]
        self.losses.append(float(torch.as_tensor(loss).mean()))

    def _epoch(self, engine) -> None:
        row = {"epoch": engine.state.epoch, "train_loss": sum(self.losses) / max(len(self.losses), 1)}
        self.losses.clear()
        line = f"epoch {engine.state.epoch}/{engine.state.max_epochs}: loss {row['train_loss']:.4f}"
        if self.validator is not None and self.validator.state.epoch == engine.state.epoch:
            row.update({k: float(v) for k, v in self.validator.state.metrics.items() if _is_scalar(v)})
            line += "; validation " + ", ".join(metric_texts(self.validator))
        logger.info(f"{line} ({time.perf_counter() - self.epoch_start:.0f} s)")
        # a checkpoint may restore the epoch after STARTED: forget rows from this epoch on only now
        self.rows = [r for r in self.rows if r["epoch"] < engine.state.epoch] + [row]
        frame = pd.DataFrame(self.rows)
        atomic_write_with(self.path, lambda p: frame.to_csv(p, index=False))


def _is_scalar(value) -> bool:
    return isinstance(value, (int, float)) or (isinstance(value, torch.Tensor) and value.numel() == 1)
