"""What an image-level network's outputs mean, from the datalist in training and from the model after.

A classification model's outputs are its classes, in index order; a regression model's are its targets,
standardised with the training split's mean and SD so that a joint angle in degrees and an activation in
[0, 1] weigh alike in the loss. :class:`OutputNames` goes into the checkpoint beside the weights (as
``LabelClasses`` does for segmentation), so inference names and unstandardises predictions from the model
file alone, and a checkpoint trained on other classes or targets is refused by name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from sonomuscle.data.table import CLASS_NAMES_KEY, TARGETS_KEY
from sonomuscle.errors import InputError
from sonomuscle.io import read_json

OUTPUTS_KEY = "outputs"
DATALIST_NOT_FOUND = "datalist not found; make one with `sonomuscle datalist --table ...`"
MIN_SD = 1e-6  # a target that never varies in training is left unscaled rather than divided by zero


class OutputNames:
    """Checkpointable record of the outputs' names and, for regression, each target's mean and SD."""

    def __init__(
        self, names: Sequence[str], mean: Sequence[float] | None = None, sd: Sequence[float] | None = None
    ) -> None:
        self.names = list(names)
        self.regression = mean is not None
        self.mean = torch.as_tensor(
            mean if mean is not None else [0.0] * len(self.names), dtype=torch.float64
        )
        self.sd = torch.as_tensor(sd if sd is not None else [1.0] * len(self.names), dtype=torch.float64)

    def state_dict(self) -> dict:
        return {"names": list(self.names), "regression": self.regression, "mean": self.mean, "sd": self.sd}

    def load_state_dict(self, state: dict) -> None:
        if list(state["names"]) != self.names:
            kind = "targets" if self.regression else "classes"
            raise InputError(
                None,
                f"the checkpoint was trained on {kind} {list(state['names'])}, this run has {self.names}",
            )
        self.mean, self.sd = torch.as_tensor(state["mean"]), torch.as_tensor(state["sd"])


def datalist_outputs(datalist: str | os.PathLike) -> OutputNames:
    """The classes (``class_names``) or targets (``targets``, with the training split's mean and SD)."""
    content = read_json(datalist, DATALIST_NOT_FOUND)
    if CLASS_NAMES_KEY in content:
        return OutputNames(content[CLASS_NAMES_KEY])
    if TARGETS_KEY not in content:
        raise InputError(
            datalist,
            f"no {CLASS_NAMES_KEY!r} or {TARGETS_KEY!r}: make it with `sonomuscle datalist --table`",
        )
    values = torch.as_tensor([entry["label"] for entry in content.get("training", [])], dtype=torch.float64)
    if values.ndim != 2 or len(values) < 2 or values.shape[1] != len(content[TARGETS_KEY]):
        raise InputError(
            datalist, f"needs ≥ 2 training entries with one value per target {content[TARGETS_KEY]}"
        )
    return OutputNames(content[TARGETS_KEY], values.mean(0), values.std(0).clamp_min(MIN_SD))


def checkpoint_outputs(path: str | os.PathLike) -> OutputNames:
    """The :class:`OutputNames` a trained image-level model was saved with."""
    from sonomuscle.checkpoints import read_checkpoint

    checkpoint = read_checkpoint(path)
    if OUTPUTS_KEY not in checkpoint:
        raise InputError(path, f"holds no {OUTPUTS_KEY!r}: not a model of an image-level bundle")
    state = checkpoint[OUTPUTS_KEY]
    return OutputNames(state["names"], state["mean"] if state["regression"] else None, state["sd"])


def class_weights(datalist: str | os.PathLike) -> torch.Tensor:
    """Cross-entropy weights, inverse to each class's share of the training split (mean weight 1), so a
    rare class (a myopathic muscle) counts as much as a common one."""
    content = read_json(datalist, DATALIST_NOT_FOUND)
    names = content.get(CLASS_NAMES_KEY)
    if not names:
        raise InputError(datalist, f"no {CLASS_NAMES_KEY!r}: not a classification datalist")
    counts = torch.bincount(
        torch.as_tensor([e["label"] for e in content.get("training", [])], dtype=torch.long),
        minlength=len(names),
    ).double()
    if (counts == 0).any():
        missing = [name for name, n in zip(names, counts.tolist(), strict=True) if n == 0]
        raise InputError(datalist, f"no training image of class {', '.join(missing)}: it cannot be learnt")
    weights = counts.sum() / counts
    return (weights / weights.mean()).float()
