"""Continue a training from its last checkpoint, saying so, on the schedule of the epochs asked for now.

MONAI's ``CheckpointLoader`` restores the learning-rate scheduler as it was saved: after "try 3 epochs,
then 50" into the same ``output_dir`` a cosine schedule keeps ``T_max`` 3 and the learning rate cycles every
6 epochs, and asking for fewer epochs than the checkpoint holds ends in a traceback. Here the schedule is
stretched to the new ``max_epochs`` (the learning rate set to where that schedule stands at the resumed
epoch), and every case is one log line a user reads.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from ignite.engine import Engine

from sonomuscle.errors import InputError
from sonomuscle.handlers.checkpoints import ModelLoader

logger = logging.getLogger(__name__)


class ResumingCheckpointLoader(ModelLoader):
    """``ModelLoader`` for a run's own checkpoint: a clear line, a schedule over the new ``max_epochs``."""

    remedy = ": start afresh with --resume false or a new --output_dir"

    def __init__(self, load_path: str, load_dict: dict, lr_scheduler=None, **kwargs) -> None:
        super().__init__(load_path=load_path, load_dict=load_dict, **kwargs)
        self.lr_scheduler = lr_scheduler

    def __call__(self, engine: Engine) -> None:
        asked = engine.state.max_epochs
        try:
            super().__call__(engine)
        except InputError:  # the file's own problem, said by ModelLoader (an InputError is a ValueError too)
            raise
        except ValueError:  # MONAI: the checkpoint's epoch is past max_epochs
            raise InputError(
                self.load_path,
                f"this run already trained {engine.state.epoch} epochs, more than max_epochs {asked}: raise "
                "max_epochs to continue it, or start afresh with --resume false or a new --output_dir",
            ) from None
        epoch = engine.state.epoch
        logger.info(f"resuming the run in {Path(self.load_path).parent.parent} at epoch {epoch} of {asked}")
        if epoch >= asked:
            logger.info(f"it already finished its {asked} epochs: nothing left to train")
        planned = getattr(self.lr_scheduler, "T_max", asked)
        if planned != asked:
            stretch_cosine_schedule(self.lr_scheduler, asked)
            logger.info(
                f"max_epochs changed from {planned} to {asked}: the learning-rate schedule now runs over "
                f"{asked} epochs, continued at epoch {epoch}"
            )


def stretch_cosine_schedule(scheduler, total_epochs: int) -> None:
    """Make a ``CosineAnnealingLR`` one of ``total_epochs``, at the rate that schedule has at its current epoch.

    The scheduler's own update is recursive (each rate from the last), so changing ``T_max`` alone would
    carry the old schedule's end rate (often 0) into the new one.
    """
    scheduler.T_max = total_epochs
    progress = min(scheduler.last_epoch, total_epochs) / total_epochs
    for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, strict=True):
        group["lr"] = scheduler.eta_min + (base - scheduler.eta_min) * (1 + math.cos(math.pi * progress)) / 2
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]
