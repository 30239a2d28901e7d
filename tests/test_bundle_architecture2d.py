"""muscle_architecture_2d honours the bundle contract and trains, resumes, infers and evaluates for real."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from monai.bundle import ConfigParser
from PIL import Image

from bundle_runs import bundle_run
from sonomuscle.data.phantoms import write_phantom_dataset

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "muscle_architecture_2d"
CONFIGS = BUNDLE / "configs"
# seconds on a CPU: small images, a narrow U-Net (three poolings still fit 64 px)
TINY = {"spatial_size": [64, 64], "channels": [4, 8, 16, 32]}


def _bundle_run(configs: list[str], check: bool = True, **overrides) -> subprocess.CompletedProcess:
    names = [c.removesuffix(".json") for c in configs]
    return bundle_run("muscle_architecture_2d", names, check=check, **{**TINY, **overrides})


@pytest.fixture(scope="module")
def datalist(tmp_path_factory) -> Path:
    """Eight 256×256 phantoms (0.2 mm): six to train on, one to validate, one to test."""
    return Path(write_phantom_dataset("architecture2d", tmp_path_factory.mktemp("phantoms"), 8, 0))


@pytest.fixture(scope="module")
def trained(datalist, tmp_path_factory) -> Path:
    """One epoch of training; the output folder holds model.pt, the checkpoint and the curves."""
    out = tmp_path_factory.mktemp("run")
    _train(datalist, out, epochs=1)
    return out


def _train(datalist: Path, out: Path, epochs: int, **overrides) -> subprocess.CompletedProcess:
    """Training with the config's own ``model_path``: the best model belongs in the run's output."""
    return _bundle_run(
        ["train.json"], datalist=datalist, output_dir=out, max_epochs=epochs, val_interval=1, **overrides
    )


def test_metadata_matches_network():
    meta = ConfigParser.load_config_file(CONFIGS / "metadata.json")["network_data_format"]
    inference = ConfigParser.load_config_file(CONFIGS / "inference.json")
    assert meta["outputs"]["pred"]["channel_def"] == {"0": "aponeurosis", "1": "fascicle"}
    assert meta["outputs"]["pred"]["num_channels"] == inference["network_def"]["out_channels"] == 2
    assert meta["inputs"]["image"]["spatial_shape"] == inference["spatial_size"]


def test_train_writes_model_checkpoint_curves_and_resumes(datalist, trained):
    assert (trained / "model.pt").is_file() and (trained / "checkpoints" / "checkpoint_epoch=1.pt").is_file()
    curve = pd.read_csv(trained / "learning_curve.csv")
    assert list(curve["epoch"]) == [1] and {"train_loss", "val_dice_aponeurosis", "val_hd95"} <= set(
        curve.columns
    )
    assert len(pd.read_csv(trained / "val_hd95_raw.csv")) == 1  # per-image details of the one validation case

    resumed = _train(datalist, trained, epochs=2)
    log = resumed.stdout + resumed.stderr
    assert f"resuming the run in {trained} at epoch 1 of 2" in log
    assert "max_epochs changed from 1 to 2: the learning-rate schedule now runs over 2 epochs" in log
    assert (trained / "checkpoints" / "checkpoint_epoch=2.pt").is_file()
    assert list(pd.read_csv(trained / "learning_curve.csv")["epoch"]) == [1, 2]
    # one line per epoch, the best model's file named at the end; no per-iteration or engine chatter
    assert "epoch 2/2: loss" in log and "validation mean_dice" in log and "hd95" in log
    assert "best model (val_mean_dice" in log and f"--model_path {trained / 'model.pt'}" in log
    assert "Epoch[" not in log and "nvImageCodec" not in log


def test_training_into_a_finished_run_asks_before_it_starts_afresh(datalist, tmp_path):
    out = tmp_path / "run"
    _train(datalist, out, epochs=2)
    shorter = _train(datalist, out, epochs=1, check=False)
    assert shorter.returncode != 0
    assert "already trained 2 epochs, more than max_epochs 1" in shorter.stdout + shorter.stderr
    afresh = _train(datalist, out, epochs=1, resume=False)
    assert "resuming" not in afresh.stdout + afresh.stderr
    assert list(pd.read_csv(out / "learning_curve.csv")["epoch"]) == [1]


def test_inference_on_a_folder_without_labels(datalist, trained, tmp_path):
    images = tmp_path / "new_images"
    images.mkdir()
    test_image = datalist.parent / json.loads(datalist.read_text())["test"][0]["image"]
    (images / "scan.png").write_bytes(test_image.read_bytes())
    (images / "broken.png").write_bytes(b"not a png")  # reported and skipped, not fatal
    out = tmp_path / "pred"
    done = _bundle_run(
        ["inference.json"], input_dir=str(images), output_dir=str(out), model_path=str(trained / "model.pt")
    )
    assert "1 of 1 result(s) without calibration: lengths are in PIXELS (give --spacing MM" in done.stdout

    original = np.asarray(Image.open(test_image))
    for kind in ("aponeurosis", "fascicle"):
        mask = np.asarray(Image.open(out / f"scan_{kind}.png"))
        assert mask.shape == original.shape and set(np.unique(mask)) <= {0, 255}
    assert (out / "scan_overlay.jpg").is_file() and not list(out.glob("broken*"))
    rows = pd.read_csv(out / "measurements.csv")
    assert len(rows) == 1 and rows.loc[0, "image"].endswith("scan.png")
    assert rows.loc[0, "units"] == "px"  # a bare PNG has no spacing
    assert {"thickness", "thickness_mean", "pennation_angle", "fascicle_length", "n_fascicles"} <= set(
        rows.columns
    )

    # the spacing knob gives new images the millimetres of their training data
    calibrated = tmp_path / "pred_mm"
    done = _bundle_run(
        ["inference.json"],
        input_dir=str(images),
        output_dir=str(calibrated),
        model_path=str(trained / "model.pt"),
        spacing=[0.2, 0.2],
        save_overlay="false",  # as typed on the command line: off, not the truthy text "false"
        amp="false",
        measure_in_background="no",
    )
    rows_mm = pd.read_csv(calibrated / "measurements.csv")
    assert (rows_mm.loc[0, "units"], rows_mm.loc[0, "calibration"]) == ("mm", "spacing")
    assert "PIXELS" not in done.stdout
    assert (calibrated / "scan_aponeurosis.png").is_file() and not list(calibrated.glob("*_overlay.jpg"))

    refused = _bundle_run(["inference.json"], check=False, input_dir=str(images), output_dir=str(tmp_path / "x"),
                          model_path=str(trained / "model.pt"), amp="maybe")  # fmt: skip
    assert refused.returncode != 0 and "--amp must be true or false, got 'maybe'" in refused.stderr


def test_evaluate_writes_per_image_metrics_measurement_errors_and_summary(datalist, trained, tmp_path):
    out = tmp_path / "eval"
    _bundle_run(
        ["inference.json", "evaluate.json"],
        datalist=str(datalist),
        output_dir=str(out),
        model_path=str(trained / "model.pt"),
    )
    details = pd.read_csv(out / "dice_aponeurosis_raw.csv")
    assert len(details) == 1 and 0.0 <= details["mean"].iloc[0] <= 1.0
    rows = pd.read_csv(out / "measurements.csv")
    assert (
        rows.loc[0, "units"] == "mm" and rows.loc[0, "ref_thickness"] > 5
    )  # phantom muscles are > 5 mm thick
    summary = json.loads((out / "summary.json").read_text())
    assert {"mean_dice", "dice_aponeurosis", "dice_fascicle", "hd95"} <= set(summary["metrics"])
    assert summary["n_images"] == 1


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("size_mismatch", "spatial shape"),
        ("label_values", "mask values must be 0/1 or 0/255"),
        ("unreadable", "bad.png"),
        ("no_datalist", "datalist not found"),
    ],
)
def test_bad_input_fails_with_one_line(tmp_path, case, message):
    _write_png(tmp_path / "img.png", np.full((48, 40), 100))
    label = {"size_mismatch": np.zeros((40, 40)), "label_values": np.full((48, 40), 7)}.get(
        case, np.zeros((48, 40))
    )
    _write_png(tmp_path / "apo.png", label)
    entry = {"image": "img.png", "aponeurosis": "apo.png"}
    if case == "unreadable":
        (tmp_path / "bad.png").write_bytes(b"garbage")
        entry["image"] = "bad.png"
    datalist = tmp_path / "datalist.json"
    if case != "no_datalist":
        datalist.write_text(json.dumps({"training": [entry], "validation": [entry]}))
    done = _bundle_run(
        ["train.json"], check=False, datalist=str(datalist), output_dir=str(tmp_path / "out"), max_epochs=1
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, (done.stdout + done.stderr)[-2000:]
