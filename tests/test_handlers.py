"""ArchitectureMeasurements and LearningCurve on real ignite engines: CSV rows, units, skips, resume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from PIL import Image

from sonomuscle.handlers.architecture import ArchitectureMeasurements
from sonomuscle.handlers.learning_curve import LearningCurve
from sonomuscle.measures.architecture import measure_architecture

SPACING = (0.2, 0.25)


def _masks(n: int = 120) -> np.ndarray:
    """(2, X, Y): flat aponeuroses at depth 10–13 and 70–74 px, three fascicles at ~20° to them."""
    masks = np.zeros((2, n, n), np.uint8)
    masks[0, :, 10:14] = 1
    masks[0, :, 70:75] = 1
    for x0 in (10, 45, 80):
        for t in range(0, 90):
            x, y = x0 + t, round(68 - t * np.tan(np.deg2rad(20)) * SPACING[0] / SPACING[1])
            if 16 <= y <= 68 and x < n:
                masks[1, x, y] = 1
    return masks


def _pred(path, spacing_known: bool, masks: np.ndarray | None = None) -> MetaTensor:
    masks = _masks() if masks is None else masks
    affine = np.diag([*SPACING, 1.0, 1.0])
    meta = {"filename_or_obj": str(path), "spacing_known": spacing_known, "affine": torch.as_tensor(affine)}
    return MetaTensor(torch.as_tensor(masks, dtype=torch.float32), affine=torch.as_tensor(affine), meta=meta)


def _run(handler, outputs: list[list[dict]]) -> None:
    engine = Engine(lambda e, batch: batch)
    handler.attach(engine)
    engine.run(outputs, max_epochs=1)


def test_measurements_match_the_measure_in_mm_and_px_and_survive_a_bad_case(tmp_path):
    image = tmp_path / "img.png"
    Image.fromarray(np.full((120, 120), 80, np.uint8)).save(image)
    bad = _pred(tmp_path / "bad.png", True, np.zeros((2, 120, 120, 3), np.uint8))  # 3D: not measurable
    handler = ArchitectureMeasurements(tmp_path / "out", overlay_dir=tmp_path / "out")
    _run(handler, [[{"pred": _pred(image, True)}], [{"pred": bad}], [{"pred": _pred(image, False)}]])

    rows = pd.read_csv(tmp_path / "out" / "measurements.csv")
    assert list(rows["units"].fillna("")) == ["mm", "", "px"]
    expected = measure_architecture(_masks()[0], _masks()[1], SPACING)
    assert rows.loc[0, "thickness"] == pytest.approx(expected.thickness)
    assert rows.loc[0, "pennation_angle"] == pytest.approx(20.0, abs=1.5)
    assert rows.loc[0, "n_fascicles"] == 3
    assert rows.loc[0, "thickness"] == pytest.approx((70 - 14) * SPACING[1], abs=0.3)
    assert rows.loc[2, "thickness"] == pytest.approx(70 - 14, abs=1.5)  # pixels without spacing
    assert rows.loc[1, "image"].endswith("bad.png") and isinstance(rows.loc[1, "error"], str)
    assert np.isnan(rows.loc[1, "thickness"]) and rows["error"].isna()[[0, 2]].all()
    overlay = np.asarray(Image.open(tmp_path / "out" / "img_overlay.png"))
    assert overlay.shape == (120, 120, 3) and (overlay[12, :, 0] > overlay[12, :, 1]).all()  # rows = depth


def test_reference_errors_are_model_minus_reference(tmp_path):
    reference = _masks()
    pred = reference.copy()
    pred[0, :, 70] = 0  # deep aponeurosis one pixel thinner → muscle 1 px (0.25 mm) thicker
    handler = ArchitectureMeasurements(tmp_path, reference_key="label")
    _run(handler, [[{"pred": _pred("a.png", True, pred), "label": _pred("a.png", True, reference)}]])
    row = pd.read_csv(tmp_path / "measurements.csv").iloc[0]
    assert row["error_thickness"] == pytest.approx(row["thickness"] - row["ref_thickness"])
    assert row["error_thickness"] == pytest.approx(SPACING[1], abs=0.05)


def test_learning_curve_keeps_earlier_epochs_on_resume(tmp_path):
    losses = [[{"loss": torch.tensor(v)}] for v in (1.0, 3.0)]
    curve = LearningCurve(tmp_path)
    engine = Engine(lambda e, batch: batch)
    curve.attach(engine)
    engine.run(losses, max_epochs=2)
    assert list(pd.read_csv(tmp_path / "learning_curve.csv")["train_loss"]) == [2.0, 2.0]

    resumed = Engine(lambda e, batch: [{"loss": batch[0]["loss"] * 2}])
    LearningCurve(tmp_path).attach(resumed)
    resumed.load_state_dict({"epoch": 2, "max_epochs": 3, "epoch_length": 2})
    resumed.run(losses, max_epochs=3)
    assert list(pd.read_csv(tmp_path / "learning_curve.csv")["train_loss"]) == [2.0, 2.0, 4.0]
