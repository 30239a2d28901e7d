"""Ignite handlers for checkpoint files: the model inference and evaluation load, failing in one line naming
the file (:mod:`sonomuscle.checkpoints`), and a training that keeps only its newest checkpoint."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader

from sonomuscle.checkpoints import CHECKPOINT_GLOB, MODEL_NOT_FOUND, checkpoint_problem
from sonomuscle.errors import InputError, switch
from sonomuscle.inferers import fold_batch_norms


class ModelLoader(CheckpointLoader):
    """``CheckpointLoader`` for the model inference and evaluation use, failing in one line naming the file.

    With ``fold_batch_norm`` the loaded model's batch norms are then folded into its convolutions
    (:func:`~sonomuscle.inferers.fold_batch_norms`): for an inference run, not for a model trained on.
    """

    remedy = ""  # appended to the problem: what the user can do about it

    def __init__(self, *args: Any, fold_batch_norm: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fold_batch_norm = switch("--fold_batch_norm", fold_batch_norm)

    def __call__(self, engine: Engine) -> None:
        path = Path(self.load_path)
        if not path.is_file():
            raise InputError(path, MODEL_NOT_FOUND)
        try:
            super().__call__(engine)
        except Exception as err:
            problem = checkpoint_problem(err)
            if problem is None:
                raise
            raise InputError(path, problem + self.remedy) from None
        if self.fold_batch_norm:
            fold_batch_norms(self.load_dict["model"])


class StaleCheckpointPruner:
    """After each epoch's save, delete every ``checkpoint_epoch=*.pt`` but the newest (rank 0 only).

    ``CheckpointSaver`` removes only the files it saved itself, so a resumed run would keep the checkpoints
    of the run it resumed for ever.
    """

    def __init__(self, ckpt_dir: str | os.PathLike) -> None:
        self.ckpt_dir = Path(ckpt_dir)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        found = sorted(self.ckpt_dir.glob(CHECKPOINT_GLOB), key=os.path.getmtime)
        for stale in found[:-1]:
            stale.unlink(missing_ok=True)
