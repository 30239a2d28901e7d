"""The 3D bundles honour the bundle contract and train, resume, infer and evaluate for real on tiny phantoms."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from monai.bundle import ConfigParser

from bundle_runs import bundle_run
from sonomuscle.data.phantoms import bladder, ciliary

REPO = Path(__file__).resolve().parents[1]
BUNDLES = {"ciliary_muscle_3d": ciliary, "bladder_wall_3d": bladder}
# small enough for seconds on a CPU, deep enough for the U-Net's three poolings
TINY = {"spatial_size": [32, 32, 16], "channels": [4, 8, 16, 32], "sw_batch_size": 2, "num_samples": 1}


def _configs(bundle: str) -> Path:
    return REPO / "bundles" / bundle / "configs"


def _bundle_run(bundle: str, configs: list[str], **overrides) -> str:
    """``python -m monai.bundle run`` in a child process, as a user runs it; returns its log."""
    done = bundle_run(bundle, configs, **{**TINY, **overrides})
    return done.stdout + done.stderr


@pytest.fixture(scope="module", params=sorted(BUNDLES))
def bundle(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def phantoms(bundle, tmp_path_factory) -> Path:
    """Six phantoms: four to train on, one to validate, one to test."""
    out = tmp_path_factory.mktemp(bundle)
    BUNDLES[bundle].write_dataset(out, 6, seed=0)
    return out


def test_metadata_matches_network(bundle):
    meta = ConfigParser.load_config_file(_configs(bundle) / "metadata.json")
    outputs = meta["network_data_format"]["outputs"]["pred"]
    inference = ConfigParser.load_config_file(_configs(bundle) / "inference.json")
    assert len(meta["network_data_format"]["inputs"]["image"]["spatial_shape"]) == 3
    assert outputs["num_channels"] == inference["num_classes"] == len(inference["labels"]) + 1
    assert {outputs["channel_def"][str(v)] for v in inference["labels"].values()} == set(inference["labels"])


def test_train_resume_infer_evaluate(bundle, phantoms, tmp_path):
    data, out = phantoms, tmp_path / "out"
    common = {
        "datalist": str(data / "datalist.json"),
        "output_dir": str(out),
        "model_path": str(out / "model.pt"),
    }

    _bundle_run(bundle, ["train"], max_epochs=1, val_interval=1, **common)
    assert (out / "model.pt").is_file() and (out / "checkpoints" / "checkpoint_epoch=1.pt").is_file()
    hd95 = pd.read_csv(out / "val_hd95_mm_raw.csv")
    assert len(hd95) == 1  # one validation case, distances in mm saved per case

    log = _bundle_run(bundle, ["train"], max_epochs=2, val_interval=1, **common)
    assert f"resuming the run in {out} at epoch 1 of 2" in log
    assert (out / "checkpoints" / "checkpoint_epoch=2.pt").is_file()
    assert "best model (val_mean_dice" in log and f"--model_path {out / 'model.pt'}" in log

    _bundle_run(bundle, ["train", "evaluate"], **common)  # the Model Zoo way: evaluate.json over train.json
    test_cases = json.loads((data / "datalist.json").read_text())["test"]
    measurements = pd.read_csv(out / "measurements.csv")
    assert len(measurements) == len(test_cases)
    for entry in test_cases:
        name = Path(entry["image"]).name
        pred, image = nib.load(out / "pred" / name), nib.load(data / entry["image"])
        assert pred.shape == image.shape
        np.testing.assert_allclose(pred.affine, image.affine, atol=1e-6)
        assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2}
    if bundle == "bladder_wall_3d":
        assert {"wall_thickness_mean_mm", "wall_thickness_median_mm"} <= set(measurements.columns)
        assert (out / "thickness" / name).is_file()
    cases = pd.read_csv(out / "evaluation" / "cases.csv")
    assert set(cases["case"]) == {Path(e["image"]).name.removesuffix(".nii.gz") for e in test_cases}
    assert (cases["status"] != "skipped").all()
    labels = ConfigParser.load_config_file(_configs(bundle) / "inference.json")["labels"]
    assert set(cases["class"]) == set(labels)  # named as the bundle names them, not label_1, label_2
    if bundle == "bladder_wall_3d":  # local thickness of the wall only: a lumen's would mean nothing
        thickness = cases.groupby("class")["thickness_mean_pred"]
        assert thickness.count()["wall"] == len(test_cases) and thickness.count()["lumen"] == 0
    assert (out / "evaluation" / "summary.json").is_file()
    assert "Outlines drawn over the images" in (out / "evaluation" / "report.html").read_text()

    # new scans in a folder, no datalist: every readable volume is segmented, a corrupt one is skipped
    scans, new = tmp_path / "new_scans", tmp_path / "new_out"
    scans.mkdir()
    first = data / test_cases[0]["image"]
    (scans / first.name).write_bytes(first.read_bytes())
    (scans / "corrupt.nii.gz").write_bytes(b"not a volume")
    _bundle_run(bundle, ["inference"], **{**common, "input_dir": str(scans), "output_dir": str(new)})
    assert [p.name for p in (new / "pred").glob("*.nii.gz")] == [first.name]
    assert json.loads((new / "pred" / "classes.json").read_text()) == labels  # for sonomuscle evaluate
    assert len(pd.read_csv(new / "measurements.csv")) == 1
