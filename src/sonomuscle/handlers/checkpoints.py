"""Checkpoint files a user can get wrong, said in one line: missing, corrupt, another network's, unsafe.

Training resumes from the newest checkpoint it can read (a file cut short by a crash is reported and the
one before it used) and keeps only its newest; inference and evaluation name the model file and what is
wrong with it instead of a ``state_dict`` or unpickling traceback. Every load is ``weights_only=True``:
a file that holds code is refused.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader

from sonomuscle.errors import InputError, switch
from sonomuscle.inferers import fold_batch_norms

logger = logging.getLogger(__name__)
CHECKPOINT_GLOB = "checkpoint_epoch=*.pt"
MODEL_NOT_FOUND = "model not found: give --model_path (a training prints its model's path at the end)"
UNREADABLE = "not a readable PyTorch checkpoint (corrupt, cut short, or another kind of file)"


def checkpoint_problem(err: BaseException) -> str | None:
    """What is wrong with a checkpoint file, from the error loading it raised; None if it is not about the file."""
    text = str(err)
    if isinstance(err, pickle.UnpicklingError):  # garbage and code payloads look alike to the unpickler
        return f"{UNREADABLE}, or it holds code (models load with weights_only=True)"
    if isinstance(err, RuntimeError):
        if "state_dict" in text:
            detail = " ".join(text.splitlines()[1:2]).strip()[:160]
            return f"holds the weights of another network than this bundle's ({detail})"
        if re.search(r"zip archive|PytorchStreamReader|EOF", text):
            return UNREADABLE
    missing = re.match(r"Key '(.+?)' from x is not found in y: (.*)", text)  # ignite loading several objects
    if isinstance(err, ValueError) and missing:
        found = missing[2][:120]
        return (
            f"holds the weights of another network than this bundle's (no {missing[1]!r} entry among {found})"
        )
    if isinstance(err, (EOFError, KeyError)):
        return UNREADABLE
    return None


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The dict a checkpoint file holds (on the CPU, ``weights_only=True``); its problem in one line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, MODEL_NOT_FOUND)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        problem = checkpoint_problem(err)
        if problem is None:
            raise
        raise InputError(path, problem) from None
    if not isinstance(checkpoint, dict):
        raise InputError(path, f"holds a {type(checkpoint).__name__}, not a dict of weights")
    return checkpoint


def last_checkpoint(ckpt_dir: str | os.PathLike, resume: bool = True) -> str:
    """The newest readable ``checkpoint_epoch=*.pt`` in ``ckpt_dir`` (``""``: none, or ``resume`` off).

    An unreadable newer one is reported and passed over, so a crash while saving never blocks resuming.
    """
    if not switch("--resume", resume):
        return ""
    for path in sorted(Path(ckpt_dir).glob(CHECKPOINT_GLOB), key=os.path.getmtime, reverse=True):
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            problem = checkpoint_problem(err)
            if problem is None:
                raise
            logger.warning(f"{path}: {problem}; trying the checkpoint before it")
            continue
        return str(path)
    return ""


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
