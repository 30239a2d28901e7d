"""The bundles under bad input, run as a user runs them (``python -m monai.bundle run``): one line naming
the file or option and a non-zero exit, never a traceback; a batch keeps every good case and lists each bad
one with its reason in ``problems.csv``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from bad_inputs import assert_one_line, evil_checkpoint, image, mask, nifti, png
from monai.networks.nets import UNet

from bundle_runs import bundle_run
from sonomuscle.data.phantoms import write_phantom_dataset

TINY_2D = {"spatial_size": [64, 64], "channels": [4, 8, 16, 32]}
TINY_3D = {"spatial_size": [32, 32, 16], "channels": [4, 8, 16, 32], "sw_batch_size": 2, "num_samples": 1}


def _run(bundle: str, configs: list[str], **overrides) -> tuple[int, str, str]:
    tiny = TINY_2D if bundle == "muscle_architecture_2d" else TINY_3D
    done = bundle_run(bundle, configs, check=False, **{**tiny, **overrides})
    return done.returncode, done.stdout, done.stderr


def _fails_in_one_line(bundle: str, configs: list[str], *names: object, **overrides) -> str:
    code, out, err = _run(bundle, configs, **overrides)
    assert code != 0, out[-2000:] + err[-2000:]
    assert "Traceback" not in out
    return assert_one_line(err, *map(str, names))


def _random_model(path: Path, spatial_dims: int, out_channels: int, trained_channels: int = 0) -> Path:
    """Untrained weights of the TINY network: enough for inference to run end to end."""
    net = UNet(spatial_dims, 1, out_channels, (4, 8, 16, 32), (2, 2, 2), num_res_units=2, norm="batch")
    checkpoint: dict = {"model": net.state_dict()}
    if trained_channels:
        checkpoint["trained_channels"] = {"trained": torch.ones(trained_channels, dtype=torch.bool)}
    torch.save(checkpoint, path)
    return path


def _bare_3d_model(path: Path) -> Path:
    """What a 3D bundle's training writes as its best model: the network's layers bare, no ``"model"`` key."""
    torch.save(UNet(3, 1, 3, (4, 8), (2,), num_res_units=1).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def model_2d(tmp_path_factory) -> Path:
    return _random_model(tmp_path_factory.mktemp("model") / "model.pt", 2, 2, trained_channels=2)


@pytest.fixture(scope="module")
def phantoms_2d(tmp_path_factory) -> Path:
    return Path(write_phantom_dataset("architecture2d", tmp_path_factory.mktemp("ph2d"), 6, seed=0))


def _infer_2d(model: Path, tmp_path: Path, **overrides) -> tuple[int, str, str]:
    settings = {
        "model_path": model,
        "output_dir": tmp_path / "out",
        "input_dir": tmp_path / "in",
        **overrides,
    }
    return _run("muscle_architecture_2d", ["inference"], **settings)


# inference, 2D


def test_a_folder_of_good_and_bad_files_keeps_every_good_one(model_2d, tmp_path):
    folder = tmp_path / "in"
    png(folder / "good.png", image((96, 80)))
    os.link(folder / "good.png", os.fsencode(folder) + b"/caf\xe9.png")  # a name that is not UTF-8
    png(folder / "tiny.png", image((1, 1)))
    (folder / "garbage.png").write_bytes(b"not a picture")
    nifti(folder / "volume.nii.gz", np.ones((20, 20, 20)))
    code, out, err = _infer_2d(model_2d, tmp_path)
    assert code == 0, err[-3000:]
    rows = pd.read_csv(tmp_path / "out" / "measurements.csv")
    assert len(rows) == 2 and any(r.endswith("good.png") for r in rows["image"])
    problems = pd.read_csv(tmp_path / "out" / "problems.csv")
    assert sorted(Path(p).name for p in problems["input"]) == ["garbage.png", "tiny.png", "volume.nii.gz"]
    assert problems["problem"].str.len().gt(0).all() and "problems.csv" in out


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_no_input_folder_or_an_empty_one(model_2d, tmp_path, case):
    if case == "empty":
        (tmp_path / "in").mkdir()
    _fails_in_one_line("muscle_architecture_2d", ["inference"], tmp_path / "in",
                       model_path=model_2d, input_dir=tmp_path / "in", output_dir=tmp_path / "out")  # fmt: skip


@pytest.mark.parametrize(
    "kind, write, says",
    [
        ("missing", lambda p: None, "model not found"),
        (
            "garbage",
            lambda p: p.write_bytes(b"\x00\x01 not a checkpoint"),
            "not a readable PyTorch checkpoint",
        ),
        ("other_network", lambda p: _random_model(p, 3, 3), "another network"),
        ("bare_3d_training_output", _bare_3d_model, "another network"),
        ("code", evil_checkpoint, "weights_only"),
    ],
)
def test_unusable_models_are_named(tmp_path, kind, write, says):
    png(tmp_path / "in" / "good.png", image((96, 80)))
    model = tmp_path / f"{kind}.pt"
    write(model)
    line = _fails_in_one_line("muscle_architecture_2d", ["inference"], model, says,
                              model_path=model, input_dir=tmp_path / "in", output_dir=tmp_path / "out")  # fmt: skip
    assert "code in a checkpoint ran" not in line


@pytest.mark.parametrize(
    "override, named",
    [
        ({"spatial_size": [60, 60]}, "--spatial_size"),
        ({"spatial_size": [64]}, "--spatial_size"),
        ({"spacing": [0.0, 0.1]}, "spacing"),
    ],
)
def test_meaningless_inference_settings(model_2d, tmp_path, override, named):
    png(tmp_path / "in" / "good.png", image((96, 80)))
    code, _, err = _infer_2d(model_2d, tmp_path, **override)
    assert code != 0
    assert_one_line(err, named)


def test_an_output_folder_that_is_a_file(model_2d, tmp_path):
    png(tmp_path / "in" / "good.png", image((96, 80)))
    (tmp_path / "out").write_text("")
    code, _, err = _infer_2d(model_2d, tmp_path)
    assert code != 0
    assert_one_line(err, tmp_path / "out", "is a file")


# training, 2D


def _train_2d(datalist: Path, out: Path, **overrides) -> tuple[int, str, str]:
    settings = {"datalist": datalist, "output_dir": out, "max_epochs": 1, "val_interval": 1, **overrides}
    return _run("muscle_architecture_2d", ["train"], **settings)


@pytest.mark.parametrize(
    "override, named",
    [({"max_epochs": 0}, "--max_epochs"), ({"max_epochs": -1}, "--max_epochs"), ({"val_interval": 0}, "--val_interval"),
     ({"learning_rate": 0}, "--learning_rate"), ({"spatial_size": [64, 60]}, "--spatial_size")],
)  # fmt: skip
def test_meaningless_training_settings(phantoms_2d, tmp_path, override, named):
    code, _, err = _train_2d(phantoms_2d, tmp_path / "run", **override)
    assert code != 0
    assert_one_line(err, named)


def _written_datalist(tmp_path: Path, content: str) -> Path:
    path = tmp_path / "datalist.json"
    path.write_text(content)
    return path


@pytest.mark.parametrize(
    "content, says",
    [
        (None, "datalist not found"),
        ("{not json", "no usable 'training' list"),
        ('{"training": [], "validation": []}', "'training' list is empty"),
    ],
)
def test_unusable_datalists(tmp_path, content, says):
    datalist = tmp_path / "datalist.json" if content is None else _written_datalist(tmp_path, content)
    code, _, err = _train_2d(datalist, tmp_path / "run")
    assert code != 0
    assert_one_line(err, datalist, says)


def test_a_mask_outside_its_classes_is_named(tmp_path):
    png(tmp_path / "a.png", image((96, 80)))
    png(tmp_path / "m.png", np.full((96, 80), 7))
    entry = {"image": "a.png", "aponeurosis": "m.png"}
    datalist = _written_datalist(tmp_path, json.dumps({"training": [entry], "validation": [entry]}))
    code, _, err = _train_2d(datalist, tmp_path / "run")
    assert code != 0
    assert_one_line(err, "m.png", "mask values must be 0/1 or 0/255")


def test_a_corrupt_newest_checkpoint_resumes_from_the_one_before_and_old_ones_go(phantoms_2d, tmp_path):
    out = tmp_path / "run"
    assert _train_2d(phantoms_2d, out)[0] == 0
    (out / "checkpoints" / "checkpoint_epoch=7.pt").write_bytes(b"cut short")  # newer than epoch 1
    code, out_log, err = _train_2d(phantoms_2d, out, max_epochs=2)
    assert code == 0, err[-3000:]
    assert "checkpoint_epoch=7.pt: not a readable PyTorch checkpoint" in out_log + err
    assert "resuming the run" in out_log + err and "at epoch 1 of 2" in out_log + err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint_epoch=2.pt"]


def test_a_checkpoint_of_another_network_in_the_run_folder(phantoms_2d, tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    torch.save(
        {"model": UNet(3, 1, 3, (4, 8), (2,)).state_dict()}, out / "checkpoints" / "checkpoint_epoch=3.pt"
    )
    code, _, err = _train_2d(phantoms_2d, out, max_epochs=5)
    assert code != 0
    assert_one_line(err, "checkpoint_epoch=3.pt", "another network", "--resume false")


# evaluation, 2D


def test_evaluate_config_keeps_every_good_test_image(phantoms_2d, model_2d, tmp_path):
    datalist = json.loads(phantoms_2d.read_text())
    data = phantoms_2d.parent
    shutil.copytree(data, tmp_path / "data")
    test = datalist["test"][0]
    png(tmp_path / "data" / "bad_image.png", image((96, 80)))
    png(tmp_path / "data" / "bad_mask.png", mask((50, 50)))  # not the image's size
    datalist["test"] = [test, {"image": "bad_image.png", "aponeurosis": "bad_mask.png"}]
    path = tmp_path / "data" / "datalist.json"
    path.write_text(json.dumps(datalist))
    code, _, err = _run("muscle_architecture_2d", ["train", "evaluate"], datalist=path,
                        model_path=model_2d, output_dir=tmp_path / "eval")  # fmt: skip
    assert code == 0, err[-3000:]
    assert len(pd.read_csv(tmp_path / "eval" / "measurements.csv")) == 1
    problems = pd.read_csv(tmp_path / "eval" / "problems.csv")
    assert list(problems["input"].map(lambda p: Path(p).name)) == ["bad_mask.png"]


# 3D


@pytest.fixture(scope="module")
def phantoms_3d(tmp_path_factory) -> Path:
    return Path(write_phantom_dataset("bladder3d", tmp_path_factory.mktemp("ph3d"), 6, seed=0))


def test_3d_inference_keeps_the_good_volume(phantoms_3d, tmp_path):
    model = _random_model(tmp_path / "model.pt", 3, 3)
    good = phantoms_3d.parent / json.loads(phantoms_3d.read_text())["test"][0]["image"]
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(good, folder / good.name)
    png(folder / "slice.png", image())
    nifti(folder / "flat.nii.gz", np.ones((20, 20, 20)), zooms=(1.0, 1.0, 0.0))
    # a header in cm read as mm, or another scanner's coarse volume: ~10^11 voxels at the bundle's 0.5 mm
    nifti(folder / "huge.nii.gz", np.ones((47, 63, 44)), zooms=(15.0, 15.0, 15.0))
    code, _, err = _run("bladder_wall_3d", ["inference"], model_path=model, input_dir=folder,
                          output_dir=tmp_path / "out")  # fmt: skip
    assert code == 0, err[-3000:]
    assert [p.name for p in (tmp_path / "out" / "pred").glob("*.nii.gz")] == [good.name]
    problems = pd.read_csv(tmp_path / "out" / "problems.csv")
    said = dict(zip(problems["input"].map(lambda p: Path(p).name), problems["problem"], strict=True))
    assert sorted(said) == ["flat.nii.gz", "huge.nii.gz", "slice.png"] and "voxel size" in said["flat.nii.gz"]
    assert "become 1410×1890×1320 at the bundle's 0.5×0.5×0.5 mm" in said["huge.nii.gz"]


def test_3d_label_on_another_grid_than_its_image(tmp_path):
    nifti(tmp_path / "label.nii.gz", np.zeros((20, 20, 20)), zooms=(2.0, 2.0, 2.0))
    nifti(tmp_path / "image.nii.gz", np.ones((20, 20, 20)))
    entry = {"image": "image.nii.gz", "label": "label.nii.gz"}
    path = _written_datalist(tmp_path, json.dumps({"training": [entry], "validation": [entry]}))
    code, _, err = _run(
        "bladder_wall_3d", ["train"], datalist=path, output_dir=tmp_path / "run", max_epochs=1
    )
    assert code != 0
    assert_one_line(err, "label.nii.gz", "spacing")
