"""The README's first command, shrunk: phantoms → bundle training → inference → report folder."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sonomuscle.cli import main


@pytest.mark.slow
def test_demo_writes_a_complete_report(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--n", "8", "--epochs", "2"]) == 0

    report = tmp_path / "report"
    summary = json.loads((report / "summary.json").read_text())
    assert summary["n_phantoms"] == 8 and summary["epochs"] == 2 and summary["wall_time_s"] > 0
    assert summary["n_test_cases"] >= 1
    assert set(summary["dice"]) == {"aponeurosis", "fascicle"}
    assert all(0.0 <= d <= 1.0 for d in summary["dice"].values())
    assert set(summary["agreement"]) == {"thickness", "pennation_angle", "fascicle_length"}

    table = pd.read_csv(report / "measurements.csv")
    assert len(table) == summary["n_test_cases"]
    for column in ("thickness_mm_model", "thickness_mm_truth", "thickness_mm_error", "dice_aponeurosis"):
        assert column in table
    error = table["fascicle_length_mm_error"].abs()
    if error.notna().any():  # the worst case is always shown
        assert table.loc[error.idxmax(), "case"] in summary["worst_cases"]
    for picture in ("bland_altman.png", "learning_curve.png"):
        assert (report / picture).stat().st_size > 1000
    assert {p.stem for p in (report / "overlays").glob("*.png")} == set(summary["worst_cases"])
    page = (report / "report.html").read_text()
    assert "Measurements against the exact truth" in page and "ICC" in page and "Worst cases" in page
    assert page.count("<img") >= 2 + 2 * len(summary["worst_cases"])
