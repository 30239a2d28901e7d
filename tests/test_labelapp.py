"""The parts of the MONAI Label app that need no MONAI Label: which bundles it serves, their writable copies,
the labels a viewer gets, the mirror uncertainty, and the server's command line and refusals."""

from __future__ import annotations

import json

import pytest
import torch
from monai.bundle import ConfigParser

from sonomuscle import labelserver
from sonomuscle.errors import InputError
from sonomuscle.labelapp.bundles import (
    bundle_dims,
    chosen_bundles,
    image_dims,
    segmentation_bundles,
    viewer_labels,
    working_copies,
)
from sonomuscle.labelapp.uncertainty import mirror_disagreement, soft_disagreement
from sonomuscle.workflows import bundle_dir

SEGMENTATION = {"muscle_architecture_2d", "muscle_csa_2d", "ciliary_muscle_3d", "bladder_wall_3d"}


def test_segmentation_bundles_are_served_and_image_level_ones_refused_by_name():
    assert set(segmentation_bundles()) == SEGMENTATION
    assert set(chosen_bundles("all")) == set(chosen_bundles("")) == SEGMENTATION
    assert chosen_bundles("ciliary_muscle_3d, muscle_architecture_2d") == [
        "ciliary_muscle_3d",
        "muscle_architecture_2d",
    ]
    with pytest.raises(InputError, match="muscle_classification_2d"):
        chosen_bundles(["muscle_classification_2d"])
    assert bundle_dims(bundle_dir("muscle_architecture_2d")) == 2
    assert bundle_dims(bundle_dir("bladder_wall_3d")) == 3


def test_working_copies_follow_the_installed_bundle_but_keep_a_retrained_model(tmp_path):
    (copy,) = working_copies(tmp_path, ["ciliary_muscle_3d"]).values()
    installed = bundle_dir("ciliary_muscle_3d")
    model, config = copy / "models" / "model.pt", copy / "configs" / "inference.json"
    assert model.read_bytes() == (installed / "models" / "model.pt").read_bytes()
    model.write_bytes(b"retrained")
    config.write_text("{}")  # as an older sonomuscle's bundle would differ
    working_copies(tmp_path, ["ciliary_muscle_3d"])
    assert model.read_bytes() == b"retrained"
    assert config.read_text() == (installed / "configs" / "inference.json").read_text()
    model.unlink()  # deleting the trained model goes back to the shipped one
    working_copies(tmp_path, ["ciliary_muscle_3d"])
    assert model.read_bytes() == (installed / "models" / "model.pt").read_bytes()


@pytest.mark.parametrize(
    ("bundle", "labels"),
    [
        ("muscle_architecture_2d", {"aponeurosis": 1, "fascicle": 2}),
        ("ciliary_muscle_3d", {"ciliary_muscle": 1}),
        ("bladder_wall_3d", {"wall": 1, "lumen": 2}),
    ],
)
def test_viewer_labels_come_from_the_bundles_inference_config(bundle, labels):
    config = ConfigParser()
    config.read_config(bundle_dir(bundle) / "configs" / "inference.json")
    config["bundle_root"] = str(bundle_dir(bundle))
    assert viewer_labels(config) == labels


def test_csa_viewer_labels_are_the_classes_its_model_was_trained_on():
    config = ConfigParser()
    config.read_config(bundle_dir("muscle_csa_2d") / "configs" / "inference.json")
    config["bundle_root"] = str(bundle_dir("muscle_csa_2d"))
    metadata = json.loads((bundle_dir("muscle_csa_2d") / "configs" / "metadata.json").read_text())
    channel_def = metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert viewer_labels(config) == {name: int(k) for k, name in channel_def.items() if name != "background"}


def test_image_dims_of_2d_and_3d_files_and_none_for_an_unreadable_one(tmp_path):
    import nibabel as nib
    import numpy as np
    from PIL import Image

    Image.fromarray(np.zeros((8, 9), np.uint8)).save(tmp_path / "a.png")
    nib.save(nib.Nifti1Image(np.zeros((8, 9, 1), np.float32), np.eye(4)), tmp_path / "slicer.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((8, 9, 4), np.float32), np.eye(4)), tmp_path / "v.nii.gz")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    assert [image_dims(tmp_path / n) for n in ("a.png", "slicer.nii.gz", "v.nii.gz", "bad.png")] == [
        2,
        2,
        3,
        None,
    ]


def test_soft_disagreement_is_0_for_equal_maps_1_for_disjoint_ones_and_skips_empty_channels():
    a = torch.zeros(3, 4, 4)
    a[1, :2] = 1
    b = torch.zeros(3, 4, 4)
    b[1, 2:] = 1
    assert soft_disagreement(a, a) == 0.0
    assert soft_disagreement(a, b) == pytest.approx(1.0)
    assert soft_disagreement(torch.zeros(3, 4, 4), torch.zeros(3, 4, 4)) == 0.0
    half = a.clone()
    half[1, 1] = 0
    assert soft_disagreement(a, half) == pytest.approx(1 - 2 * 4 / 12)


def test_mirror_disagreement_tells_a_mirror_symmetric_model_from_a_position_bound_one():
    image = torch.rand(1, 6, 5)

    def symmetric(batch):  # segments by brightness: a mirrored image gives the mirrored answer
        return (batch > 0.5).float()

    def left_half(batch):  # always marks the same half of the picture, whatever it shows
        out = torch.zeros_like(batch)
        out[:, :, :3] = 1
        return out

    assert mirror_disagreement(symmetric, image) == 0.0
    assert mirror_disagreement(left_half, image) == pytest.approx(1.0)


def test_server_listens_on_this_machine_only_unless_told_and_refuses_a_missing_studies_folder(tmp_path):
    command = labelserver.LabelServer(tmp_path, ["ciliary_muscle_3d"], env=tmp_path / "env").command()
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--conf") + 1 : command.index("--conf") + 3] == [
        "models",
        "ciliary_muscle_3d",
    ]
    assert command[command.index("--app") + 1] == str(labelserver.APP_DIR)
    with pytest.raises(InputError, match="--studies"):
        labelserver.LabelServer(tmp_path / "missing", env=tmp_path).start()
    with pytest.raises(InputError, match="label-env"):
        labelserver.LabelServer(tmp_path, env=tmp_path / "no-env").start()
