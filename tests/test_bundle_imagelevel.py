"""muscle_classification_2d and muscle_state_regression_2d for real, through ``python -m monai.bundle run``:
phantoms → table datalist → train → inference → evaluate, and leave-one-subject-out cross-validation.

The learning bars are the issue's: balanced accuracy ≥ 0.85 over ≥ 3 classes on held-out phantoms, and an
RMSE below a third of each target's SD on held-out subjects. Sizes fit a CI budget on 2 CPU cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bundle_runs import bundle_run
from sonomuscle.crossval import cross_validate
from sonomuscle.data.phantoms import classify2d, regress2d
from sonomuscle.data.table import build_table_datalist

MIN_BALANCED_ACCURACY = 0.85
MAX_RMSE_OVER_SD = 1 / 3  # of each target's SD, on held-out subjects
SMALL = {"spatial_size": [96, 96]}


def _split(datalist: Path, split: str) -> list[dict]:
    return json.loads(datalist.read_text())[split]


@pytest.fixture(scope="module")
def classes(tmp_path_factory) -> Path:
    return classify2d.write_dataset(tmp_path_factory.mktemp("classify2d"), 160, seed=1)


@pytest.fixture(scope="module")
def states(tmp_path_factory) -> Path:
    return regress2d.write_dataset(tmp_path_factory.mktemp("regress2d"), 600, seed=1)


@pytest.mark.slow
def test_classification_learns_held_out_phantoms(classes, tmp_path):
    bundle = "muscle_classification_2d"
    bundle_run(bundle, ["train"], datalist=classes, output_dir=tmp_path / "run", max_epochs=60, **SMALL)
    out = tmp_path / "test"
    done = bundle_run(
        bundle,
        ["train", "evaluate"],
        datalist=classes,
        output_dir=out,
        model_path=tmp_path / "run" / "model.pt",
        **SMALL,
    )
    summary = json.loads((out / "evaluation" / "summary.json").read_text())
    present = [name for name, c in summary["classes"].items() if c["n_true"] > 0]
    assert len(present) >= 3
    assert summary["balanced_accuracy"] >= MIN_BALANCED_ACCURACY, summary["classes"]
    assert "balanced accuracy" in done.stdout
    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == len(_split(classes, "test"))
    probabilities = predictions[[f"probability_{name}" for name in classify2d.CLASS_NAMES]]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert (out / "evaluation" / "confusion_matrix.png").stat().st_size > 0


@pytest.mark.slow
def test_regression_learns_held_out_subjects_in_the_targets_units(states, tmp_path):
    bundle = "muscle_state_regression_2d"
    bundle_run(bundle, ["train"], datalist=states, output_dir=tmp_path / "run", max_epochs=120, **SMALL)
    out = tmp_path / "test"
    bundle_run(
        bundle,
        ["train", "evaluate"],
        datalist=states,
        output_dir=out,
        model_path=tmp_path / "run" / "model.pt",
        **SMALL,
    )
    test = _split(states, "test")
    training_subjects = {e["subject"] for e in _split(states, "training")}
    assert not {e["subject"] for e in test} & training_subjects
    summary = json.loads((out / "evaluation" / "summary.json").read_text())
    for target in regress2d.TARGETS:
        stats = summary["targets"][target]
        assert stats["rmse"] < MAX_RMSE_OVER_SD * stats["sd_truth"], (target, stats)
    predictions = pd.read_csv(out / "predictions.csv")
    truth = np.array([e["label"] for e in test])
    assert list(predictions.columns[1:3]) == list(regress2d.TARGETS)
    # in units: the predicted angles spread over degrees, not over standardised units
    assert predictions["angle"].std() > 0.5 * truth[:, 0].std()


def test_leave_one_subject_out_predicts_every_subject_once_from_a_model_that_never_saw_it(tmp_path):
    """Tiny settings: the folds, the pooling and the report, not the accuracy."""
    phantoms = regress2d.write_dataset(tmp_path / "phantoms", 15, seed=2)
    datalist = build_table_datalist(
        phantoms.parent / "images",
        phantoms.parent / "labels.csv",
        tmp_path / "loso.json",
        targets=list(regress2d.TARGETS),
        subject_column="subject",
        leave_one_subject_out=True,
    )
    subjects = {e["subject"] for e in datalist["training"] + datalist["validation"]}
    tiny = {
        "max_epochs": 1,
        "val_interval": 1,
        "batch_size": 4,
        "spatial_size": [32, 32],
        "channels": [4, 8, 16],
        "pretrained_encoder": False,  # the shipped encoder has other channels
    }
    summary = cross_validate("muscle_state_regression_2d", tmp_path / "loso.json", tmp_path / "cv", **tiny)
    pooled = pd.read_csv(tmp_path / "cv" / "predictions.csv")
    assert len(pooled) == 15 and pooled["image"].is_unique
    assert set(summary["per_subject"]) == subjects
    for fold_dir in sorted((tmp_path / "cv").glob("fold_*")):
        held_out = {e["subject"] for e in json.loads((fold_dir / "datalist.json").read_text())["test"]}
        trained_on = {
            e["subject"]
            for e in datalist["training"] + datalist["validation"]
            if e["subject"] not in held_out
        }
        assert len(held_out) == 1 and held_out.isdisjoint(trained_on)
    # resumable: a second call reuses every fold's predictions
    stamp = {p: p.stat().st_mtime for p in (tmp_path / "cv").glob("fold_*/predictions.csv")}
    cross_validate("muscle_state_regression_2d", tmp_path / "loso.json", tmp_path / "cv", **tiny)
    assert stamp == {p: p.stat().st_mtime for p in (tmp_path / "cv").glob("fold_*/predictions.csv")}
