"""MONAI Label against a real server: sonomuscle's app started on 127.0.0.1 over a studies folder of phantoms
(2D PNG, a Slicer-style 2D NIfTI of shape (X, Y, 1), 3D NIfTI), spoken to over HTTP, and stopped whatever
happens. Needs MONAI Label's environment (``sonomuscle label-env``; CI builds it first).
"""

from __future__ import annotations

import io
import json
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from sonomuscle import labelserver
from sonomuscle.data.phantoms import write_phantom_dataset
from sonomuscle.labelapp.bundles import segmentation_bundles

pytestmark = pytest.mark.skipif(
    not labelserver.env_python(labelserver.DEFAULT_ENV).is_file(),
    reason=f"MONAI Label's environment is not built ({labelserver.DEFAULT_ENV}): run `sonomuscle label-env`",
)
ARCH_VALUES = {"aponeurosis": 1, "fascicle": 2}


class Server:
    """HTTP calls to one running server."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def call(self, method: str, path: str, query: dict | None = None, **kwargs) -> bytes:
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        request = urllib.request.Request(url, method=method, **kwargs)
        with urllib.request.urlopen(request) as response:
            return response.read()

    def json(self, method: str, path: str, query: dict | None = None, **kwargs) -> object:
        return json.loads(self.call(method, path, query, **kwargs))

    def form(self, method: str, path: str, query: dict, files: dict[str, Path]) -> bytes:
        """A multipart form: ``params`` ``{}`` and the ``files``, as MONAI Label's clients send them."""
        boundary = uuid.uuid4().hex
        body = io.BytesIO()
        fields = [("params", None, b"{}")] + [(k, p.name, p.read_bytes()) for k, p in files.items()]
        for name, filename, content in fields:
            body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'.encode())
            body.write(f'; filename="{filename}"\r\n\r\n'.encode() if filename else b"\r\n\r\n")
            body.write(content + b"\r\n")
        body.write(f"--{boundary}--\r\n".encode())
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        return self.call(method, path, query, data=body.getvalue(), headers=headers)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _studies(root: Path) -> Path:
    """3 longitudinal PNGs, one of them also as a Slicer-style (X, Y, 1) NIfTI, 3 UBM volumes, a transverse
    (CSA) PNG and a bladder volume."""
    studies = root / "studies"
    studies.mkdir()
    arch = write_phantom_dataset("architecture2d", root / "arch", 3, seed=0).parent
    for i in range(3):
        shutil.copy(arch / "images" / f"case_00{i}.png", studies / f"arch_00{i}.png")
    grey = np.asarray(Image.open(arch / "images" / "case_000.png").convert("L")).T[..., None]
    nib.save(
        nib.Nifti1Image(grey.astype(np.float32), np.diag([0.1, 0.1, 1.0, 1.0])), studies / "slicer_2d.nii.gz"
    )
    ubm = write_phantom_dataset("ciliary3d", root / "ubm", 3, seed=0).parent
    for i in range(3):
        shutil.copy(ubm / "images" / f"case_00{i}.nii.gz", studies / f"ubm_00{i}.nii.gz")
    csa = write_phantom_dataset("csa2d", root / "csa", 1, seed=0).parent
    shutil.copy(csa / "images" / "case_000.png", studies / "csa_000.png")
    bladder = write_phantom_dataset("bladder3d", root / "bladder", 1, seed=0).parent
    shutil.copy(bladder / "images" / "case_000.nii.gz", studies / "bladder_000.nii.gz")
    return studies


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The running server and its studies folder; stopped whatever happens."""
    root = tmp_path_factory.mktemp("monailabel")
    studies = _studies(root)
    port = _free_port()
    process = labelserver.LabelServer(studies, port=port).start()
    server = Server(port)
    try:
        while process.poll() is None:  # no time limit: a busy machine starts it late, not never
            try:
                server.call("GET", "/info/")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(1)
        assert process.poll() is None, "the server stopped while starting (its log is above)"
        yield server, studies
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except Exception:
            process.kill()


def _label(data: bytes, suffix: str, tmp_path: Path) -> np.ndarray:
    path = tmp_path / f"label{suffix}"
    path.write_bytes(data)
    if suffix == ".png":
        return np.asarray(Image.open(path)).T  # PNG rows are Y: as (X, Y) like the readers
    return np.asarray(nib.load(path).dataobj)


def test_info_lists_every_segmentation_bundle_with_its_labels_and_strategies(served):
    server, _ = served
    info = server.json("GET", "/info/")
    assert set(info["models"]) == set(segmentation_bundles())
    assert info["models"]["muscle_architecture_2d"]["labels"] == ARCH_VALUES
    assert info["models"]["muscle_architecture_2d"]["dimension"] == 2
    assert info["models"]["ciliary_muscle_3d"]["labels"] == {"ciliary_muscle": 1}
    assert info["models"]["ciliary_muscle_3d"]["dimension"] == 3
    assert {"wall", "lumen"} <= set(info["models"]["bladder_wall_3d"]["labels"])
    assert "uncertainty_muscle_architecture_2d" in info["strategies"]
    assert set(info["trainers"]) == set(segmentation_bundles())


@pytest.mark.parametrize("image", ["arch_000", "slicer_2d"])
def test_2d_inference_returns_one_label_map_of_the_image_shape_with_measures(served, image, tmp_path):
    server, studies = served
    source = next(studies.glob(f"{image}.*"))
    data = server.call("POST", "/infer/muscle_architecture_2d", {"image": image, "output": "image"})
    label = _label(data, ".png" if source.suffix == ".png" else ".nii.gz", tmp_path)
    shape = np.asarray(Image.open(studies / "arch_000.png")).T.shape
    assert np.squeeze(label).shape == shape
    assert set(np.unique(label)) <= {0, *ARCH_VALUES.values()} and (label == 1).any() and (label == 2).any()
    params = server.json("POST", "/infer/muscle_architecture_2d", {"image": image, "output": "json"})
    (row,) = params["measurements"]
    assert row["thickness"] > 0 and 0 < row["pennation_angle"] < 60 and row["fascicle_length"] > 0
    units = "mm" if image == "slicer_2d" else "px"  # the NIfTI carries its pixel spacing
    assert row["units"] == units


def test_3d_inference_returns_a_label_map_on_the_volume_grid_with_its_volume(served, tmp_path):
    server, studies = served
    data = server.call("POST", "/infer/ciliary_muscle_3d", {"image": "ubm_000", "output": "image"})
    path = tmp_path / "pred.nii.gz"
    path.write_bytes(data)
    pred, image = nib.load(path), nib.load(studies / "ubm_000.nii.gz")
    assert pred.shape == image.shape
    np.testing.assert_allclose(pred.affine, image.affine, atol=1e-4)
    assert set(np.unique(np.asarray(pred.dataobj))) == {0, 1}
    params = server.json("POST", "/infer/ciliary_muscle_3d", {"image": "ubm_000", "output": "json"})
    assert params["measurements"][0]["ciliary_muscle_volume_mm3"] > 0


@pytest.mark.parametrize(
    ("model", "image", "measure"),
    [
        ("muscle_csa_2d", "csa_000", "area"),
        ("bladder_wall_3d", "bladder_000", "wall_thickness_mean_mm"),
    ],
)
def test_every_other_bundle_answers_with_its_labels_and_measures(served, model, image, measure, tmp_path):
    server, studies = served
    labels = server.json("GET", "/info/")["models"][model]["labels"]
    source = next(studies.glob(f"{image}.*"))
    suffix = ".png" if source.suffix == ".png" else ".nii.gz"
    label = _label(
        server.call("POST", f"/infer/{model}", {"image": image, "output": "image"}), suffix, tmp_path
    )
    reference = np.asarray(Image.open(source)).T if suffix == ".png" else np.asarray(nib.load(source).dataobj)
    assert label.shape == reference.shape
    assert set(np.unique(label)) - {0} and set(np.unique(label)) <= {0, *labels.values()}
    rows = server.json("POST", f"/infer/{model}", {"image": image, "output": "json"})["measurements"]
    assert any(isinstance(row.get(measure), (int, float)) and row[measure] > 0 for row in rows), rows


def test_saved_labels_train_the_2d_model_and_change_its_file(served, tmp_path):
    """Label maps saved as a viewer does (one partially annotated) train through /train; the model changes."""
    server, studies = served
    arch = studies.parent / "arch"
    for i in range(3):
        apo = np.asarray(Image.open(arch / "aponeurosis" / f"case_00{i}.png")) > 0
        fascicle = np.asarray(Image.open(arch / "fascicle" / f"case_00{i}.png")) > 0 if i < 2 else False
        label_map = np.where(apo, 1, np.where(fascicle, 2, 0)).astype(np.uint8)
        path = tmp_path / f"arch_00{i}.png"
        Image.fromarray(label_map).save(path)
        server.form("PUT", "/datastore/label", {"image": f"arch_00{i}", "tag": "final"}, {"label": path})
    stored = studies / "labels" / "final" / "arch_000.png"
    assert stored.is_file()
    assert np.array_equal(np.asarray(Image.open(stored)), np.asarray(Image.open(tmp_path / "arch_000.png")))
    model = studies / ".sonomuscle" / "models" / "muscle_architecture_2d" / "models" / "model.pt"
    before = model.stat().st_mtime
    params = json.dumps({"max_epochs": 1, "val_split": 0.34, "device": "cpu"}).encode()
    server.call(
        "POST",
        "/train/muscle_architecture_2d",
        {"run_sync": "true"},
        data=params,
        headers={"Content-Type": "application/json"},
    )
    assert model.stat().st_mtime != before


def test_active_learning_offers_an_image_not_yet_labelled(served):
    server, studies = served
    labelled = {p.name.split(".")[0] for p in (studies / "labels" / "final").glob("*")}
    sample = server.json("POST", "/activelearning/uncertainty_muscle_architecture_2d")
    assert sample["id"] not in labelled
    assert sample["id"] in {"arch_000", "arch_001", "arch_002", "slicer_2d", "csa_000"} - labelled  # 2D only
    assert 0 <= sample["score"] <= 1
