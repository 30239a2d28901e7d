"""Checkpoint files a user can get wrong, said in one line: missing, corrupt, another network's, unsafe.

Training resumes from the newest checkpoint it can read (a file cut short by a crash is reported and the
one before it used) or starts from a model's weights (``initial_weights``: fine-tuning); every reader
names the file and what is wrong with it instead of a ``state_dict`` or unpickling traceback. Every load is
``weights_only=True``: a file that holds code is refused.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from pathlib import Path

import torch

from sonomuscle.errors import InputError, switch, switched_off

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


def load_initial_weights(
    checkpoint: str | os.PathLike | None, network: torch.nn.Module, trained_channels: object = None
) -> str:
    """Start a training from the weights in ``checkpoint`` (a bundle's ``model.pt``; off: ``false``, ``""``).

    Fine-tuning the shipped model on a lab's own images needs far fewer of them than training from random
    weights. The record of the channels the model was trained on comes along, so images annotated for one
    structure do not make the other channel count as untrained. A model of another network is one line.
    Returns the file used (``""``: none).
    """
    if switched_off(checkpoint) or not str(checkpoint).strip():
        return ""
    saved = read_checkpoint(checkpoint)
    try:
        getattr(network, "module", network).load_state_dict(saved.get("model", saved))  # under DDP too
    except RuntimeError as err:
        raise InputError(checkpoint, checkpoint_problem(err) or str(err)) from None
    if trained_channels is not None and "trained_channels" in saved:
        trained_channels.load_state_dict(saved["trained_channels"])
    logger.info(f"training starts from the weights in {checkpoint}")
    return str(checkpoint)
