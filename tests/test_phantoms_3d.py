"""3D phantoms (ciliary muscle, bladder): files, spacing, exact truth and determinism."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from sonomuscle.data.phantoms import bladder, ciliary

N_CASES = 4
TASKS = {"ciliary": (ciliary, {"ciliary_muscle": 1}), "bladder": (bladder, {"wall": 1, "lumen": 2})}


@pytest.fixture(scope="module", params=sorted(TASKS))
def phantoms(request, tmp_path_factory) -> tuple[str, Path]:
    module = TASKS[request.param][0]
    out = tmp_path_factory.mktemp(request.param)
    module.write_dataset(out, N_CASES, seed=3)
    return request.param, out


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(path)
    return np.asarray(img.dataobj), img.affine


def test_files_spacing_and_classes(phantoms):
    task, out = phantoms
    module, labels = TASKS[task]
    for i in range(N_CASES):
        image, image_affine = _load(out / "images" / f"case_{i:03d}.nii.gz")
        label, label_affine = _load(out / "labels" / f"case_{i:03d}.nii.gz")
        assert image.shape == label.shape == module.SHAPE
        np.testing.assert_allclose(np.diag(image_affine)[:3], module.SPACING)
        np.testing.assert_array_equal(image_affine, label_affine)
        assert image.dtype == np.uint8 and label.dtype == np.uint8
        assert set(np.unique(label)) == {0, *labels.values()}


def test_truth_volume_is_voxel_count_times_voxel_volume(phantoms):
    task, out = phantoms
    module, labels = TASKS[task]
    truth = pd.read_csv(out / "truth.csv").set_index("case")
    assert len(truth) == N_CASES
    for case, row in truth.iterrows():
        label, _ = _load(out / "labels" / f"{case}.nii.gz")
        for name, value in labels.items():
            expected = np.count_nonzero(label == value) * np.prod(module.SPACING)
            assert row[f"{name}_volume_mm3"] == pytest.approx(expected, rel=1e-9)


def test_datalist_splits_cover_every_case_once(phantoms):
    _, out = phantoms
    datalist = json.loads((out / "datalist.json").read_text())
    assert set(datalist) == {"training", "validation", "test"}
    assert len(datalist["validation"]) >= 1 and len(datalist["test"]) >= 1
    images = [entry["image"] for split in datalist.values() for entry in split]
    assert sorted(images) == [f"images/case_{i:03d}.nii.gz" for i in range(N_CASES)]
    for split in datalist.values():
        for entry in split:
            assert (out / entry["label"]).is_file() and not Path(entry["image"]).is_absolute()


def test_image_shows_the_anatomy(phantoms):
    """The labelled structure stands out from its surroundings in the simulated B-mode."""
    task, out = phantoms
    image, _ = _load(out / "images" / "case_000.nii.gz")
    label, _ = _load(out / "labels" / "case_000.nii.gz")
    image = image.astype(float)
    if task == "bladder":
        assert image[label == 2].mean() < 0.5 * image[label == 1].mean()  # anechoic lumen inside the wall
    else:
        deep_fluid = np.zeros_like(label, dtype=bool)
        deep_fluid[:, -10:, :] = True  # vitreous at the bottom of the volume
        assert image[label == 1].mean() > 2 * image[deep_fluid].mean()


@pytest.mark.parametrize("task", sorted(TASKS))
def test_cases_are_deterministic_per_seed(task):
    module = TASKS[task][0]
    first, again, other = (module.make_case(np.random.default_rng(s)) for s in ([5, 0], [5, 0], [6, 0]))
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.label, again.label)
    assert first.truth == again.truth
    assert not np.array_equal(first.label, other.label)


def test_bladder_wall_thickness_truth():
    """Wall 1.5–8 mm, ≥ 3 voxels thick, and what a distance-based local thickness measures on the mask."""
    from sonomuscle.measures.thickness import thickness_summary

    for seed in range(3):
        case = bladder.make_case(np.random.default_rng([11, seed]))
        truth = case.truth
        low, high = bladder.THICKNESS_RANGE_MM
        assert low <= truth["wall_thickness_min_mm"] <= truth["wall_thickness_median_mm"]
        assert truth["wall_thickness_median_mm"] <= truth["wall_thickness_max_mm"] <= high
        assert truth["wall_thickness_min_mm"] >= 3 * bladder.SPACING[0]
        measured = thickness_summary(case.label == 1, bladder.SPACING)
        # half a voxel: the mask's staircase against the smooth thickness field
        assert measured["mean"] == pytest.approx(truth["wall_thickness_mean_mm"], abs=bladder.SPACING[0] / 2)
