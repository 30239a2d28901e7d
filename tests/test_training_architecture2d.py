"""Real trainings of muscle_architecture_2d: phantoms, then real DL_Track aponeuroses; held-out Dice.

Each trains through ``python -m monai.bundle run`` with the bundle's own configs, then scores the held-out
images with ``evaluate.json`` (masks back at the original resolution). Sizes are cut to fit a CI budget
on 2 CPU cores; the thresholds are measured values minus a margin (see the bundle's docs/README.md).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from bundle_runs import bundle_run
from sonomuscle.data.phantoms import write_phantom_dataset

BUNDLE = "muscle_architecture_2d"
# the bar on phantoms
PHANTOM_MIN_DICE = 0.85
# real DL_Track aponeuroses, 60 training images, 20 epochs at 256×256: measured 0.73 on the 20 held-out
# images; the mean training mask, as a no-image baseline, scores 0.11. The margin covers other CPUs.
REAL_MIN_DICE = 0.65


def _train_and_evaluate(datalist: Path, out: Path, max_epochs: int, **settings: object) -> dict:
    common = {**settings, "datalist": datalist, "output_dir": out, "model_path": out / "model.pt"}
    bundle_run(BUNDLE, ["train"], **common, max_epochs=max_epochs, val_interval=max_epochs)
    bundle_run(BUNDLE, ["train", "evaluate"], **{**common, "output_dir": out / "eval"})
    return json.loads((out / "eval" / "summary.json").read_text())


@pytest.mark.slow
def test_phantom_training_reaches_held_out_aponeurosis_dice(tmp_path):
    start = time.monotonic()
    datalist = Path(write_phantom_dataset("architecture2d", tmp_path / "phantoms", 40, 1))
    summary = _train_and_evaluate(
        datalist, tmp_path / "run", max_epochs=40, spatial_size=[128, 128], learning_rate=0.005
    )
    metrics = summary["metrics"]
    print(f"phantoms: {metrics} in {time.monotonic() - start:.0f} s")  # fascicle Dice reported, not gated
    assert metrics["dice_aponeurosis"] >= PHANTOM_MIN_DICE


@pytest.mark.slow
def test_real_aponeurosis_training_reaches_held_out_dice(dl_track_dir, tmp_path):
    start = time.monotonic()
    names = sorted(p.name for p in (dl_track_dir / "aponeurosis" / "images").glob("*.png"))[::4][:80]
    entries = [
        {
            "image": str(dl_track_dir / "aponeurosis" / "images" / n),
            "aponeurosis": str(dl_track_dir / "aponeurosis" / "masks" / n),
        }
        for n in names
    ]
    datalist = tmp_path / "datalist.json"
    datalist.write_text(
        json.dumps({"training": entries[:60], "validation": entries[60:], "test": entries[60:]})
    )
    summary = _train_and_evaluate(datalist, tmp_path / "run", max_epochs=20)
    metrics = summary["metrics"]
    print(f"real: {metrics} in {time.monotonic() - start:.0f} s")
    assert metrics["dice_fascicle"] is None  # not annotated here: ignored, not scored as 0
    assert metrics["dice_aponeurosis"] >= REAL_MIN_DICE
    # the fascicle channel never saw a label: no pennation angle or fascicle length from its noise
    rows = pd.read_csv(tmp_path / "run" / "eval" / "measurements.csv")
    assert rows["thickness"].notna().mean() > 0.5
    assert rows["pennation_angle"].isna().all() and rows["fascicle_length"].isna().all()
    assert rows["qc"].str.contains("fascicle channel never trained").all()
