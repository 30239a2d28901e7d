"""``sonomuscle crossval``: cross-validation of an image-level bundle over its datalist's folds, pooled.

Leave-one-subject-out is how the muscle-state literature reports errors (Cunningham et al.): a model is
judged on a participant it never saw. With a datalist from ``sonomuscle datalist --table ...
--leave-one-subject-out`` (or ``--folds K``), fold ``k`` trains the bundle's own ``train.json`` on every other
fold and predicts fold ``k`` with its ``inference.json``; the predictions of all folds are pooled and
evaluated once (``sonomuscle.evaluation.imagelevel``: per-target RMSE and per-subject RMSE, or accuracy
and confusion). The held-out fold is the training's validation set only for the learning curve: the model
that predicts it is the last epoch's, never one chosen by its score there. A fold whose predictions exist
is not run again, so an interrupted cross-validation resumes where it stopped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from sonomuscle.bundle import fold_pool
from sonomuscle.checkpoints import last_checkpoint
from sonomuscle.data.table import CLASS_NAMES_KEY, TARGETS_KEY
from sonomuscle.errors import InputError
from sonomuscle.evaluation.imagelevel import evaluate_predictions, image_level_outcome
from sonomuscle.io import atomic_write_json, atomic_write_text, read_json
from sonomuscle.workflows import run_bundle


def cross_validate(
    bundle: str | os.PathLike, datalist: str | os.PathLike, out: str | os.PathLike, **overrides: object
) -> dict:
    """Run every fold of ``datalist`` through ``bundle`` (a name or folder), pool and evaluate; returns the
    evaluation summary. ``overrides`` go to training and inference alike (e.g. ``max_epochs``)."""
    datalist, out = Path(datalist).resolve(), Path(out)
    content = read_json(datalist, "datalist not found; make one with `sonomuscle datalist --table ...`")
    outputs = {k: content[k] for k in (CLASS_NAMES_KEY, TARGETS_KEY) if k in content}
    if not outputs:
        raise InputError(datalist, "is not an image-level datalist (no class_names or targets)")
    entries, folds = fold_pool(datalist, fewest=2)
    tables = []
    for fold in folds:
        print(f"[crossval] fold {fold} ({folds.index(fold) + 1}/{len(folds)})", flush=True)
        held_out = [e for e in entries if e.get("fold") == fold]
        tables.append(_run_fold(bundle, datalist, out / f"fold_{fold}", fold, held_out, outputs, overrides))
    pooled = out / "predictions.csv"
    atomic_write_text(pooled, pd.concat(tables, ignore_index=True).to_csv(index=False))
    pooled_datalist = atomic_write_json(out / "datalist.json", {**outputs, "test": entries})
    summary = evaluate_predictions(pooled, pooled_datalist, "test", out / "evaluation")
    print(f"[crossval] {len(folds)} folds pooled: {image_level_outcome(summary, out / 'evaluation')}")
    return summary


def _run_fold(
    bundle: str | os.PathLike,
    datalist: Path,
    folder: Path,
    fold: int,
    held_out: list[dict],
    outputs: dict,
    overrides: dict,
) -> pd.DataFrame:
    """Train without fold ``fold``, predict it; the predictions table (reused when it exists)."""
    predictions = folder / "predictions.csv"
    if not predictions.is_file():
        train_dir = folder / "train"
        run_bundle(str(bundle), "train", datalist=datalist, fold=fold, output_dir=train_dir, **overrides)
        model = last_checkpoint(train_dir / "checkpoints")
        if not model:
            raise InputError(train_dir, f"fold {fold}: training saved no checkpoint")
        fold_datalist = atomic_write_json(folder / "datalist.json", {**outputs, "test": held_out})
        run_bundle(
            str(bundle),
            "inference",
            datalist=fold_datalist,
            data_split="test",
            model_path=model,
            output_dir=folder,
            **overrides,
        )
    return pd.read_csv(predictions)
