"""Transverse thigh phantoms (csa2d): exact areas, echo intensity of the saved image, layout and appearance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import binary_dilation
from skimage.measure import perimeter_crofton

from sonomuscle.bundle import load_datalist
from sonomuscle.data.phantoms import PHANTOM_MODULES, write_phantom_dataset
from sonomuscle.data.phantoms.csa2d import CLASSES, make_phantom, write_dataset
from sonomuscle.data.readers import load_image
from sonomuscle.errors import InputError

N, SEED = 8, 3
COLUMNS = [
    "case",
    "structure",
    "value",
    "area_mm2",
    "area_cm2",
    "perimeter_mm",
    "echo_intensity",
    "echo_intensity_sd",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight cases written through the CLI's registry; returns the datalist path."""
    return write_phantom_dataset("csa2d", tmp_path_factory.mktemp("csa2d"), n=N, seed=SEED)


@pytest.fixture(scope="module")
def truth(dataset: Path) -> pd.DataFrame:
    return pd.read_csv(dataset.parent / "truth.csv")


def _case(folder: Path, case: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Saved grey image (0–255) and label map, (X, Y), and the spacing the datalist gives the case."""
    entries = json.loads((folder / "datalist.json").read_text())
    entry = next(
        e for split in ("training", "validation", "test") for e in entries[split] if case in e["image"]
    )
    grey, _ = load_image(folder / entry["image"])
    label, _ = load_image(folder / entry["label"])
    return grey, label.astype(np.uint8), entry["spacing"][0]


def test_registered_for_the_cli():
    assert PHANTOM_MODULES["csa2d"] == "sonomuscle.data.phantoms.csa2d"


def test_fewer_than_one_case_is_an_input_error(tmp_path: Path):
    with pytest.raises(InputError, match="≥ 1"):
        write_dataset(tmp_path, n=0, seed=0)


def test_deterministic_and_a_case_does_not_depend_on_n(dataset: Path, truth: pd.DataFrame, tmp_path: Path):
    first = write_dataset(tmp_path / "a", n=3, seed=SEED).parent
    again = write_dataset(tmp_path / "b", n=3, seed=SEED).parent
    for path in sorted(first.rglob("*.*")):
        assert path.read_bytes() == (again / path.relative_to(first)).read_bytes(), path.name
    for path in sorted(first.glob("*s/case_*.png")):  # the same cases inside the larger dataset
        assert path.read_bytes() == (dataset.parent / path.relative_to(first)).read_bytes(), path.name
    small = pd.read_csv(first / "truth.csv")
    pd.testing.assert_frame_equal(small, truth[truth["case"].isin(small["case"])].reset_index(drop=True))
    other = write_dataset(tmp_path / "c", n=1, seed=SEED + 1).parent
    assert (other / "images/case_000.png").read_bytes() != (first / "images/case_000.png").read_bytes()


def test_truth_table_is_long_and_complete(dataset: Path, truth: pd.DataFrame):
    assert list(truth.columns) == COLUMNS
    assert truth["case"].nunique() == N
    assert truth.groupby("case").size().between(2, 4).all()
    assert set(truth["structure"]) <= set(CLASSES)
    assert (truth["value"] == truth["structure"].map(CLASSES)).all()
    np.testing.assert_allclose(truth["area_cm2"], truth["area_mm2"] / 100)
    assert truth["area_mm2"].min() >= 80.0 and truth["area_mm2"].max() <= 1200.0
    for case, rows in truth.groupby("case"):
        _, label, _ = _case(dataset.parent, case)
        assert set(np.unique(label)) == {0, *rows["value"]}


def test_labels_lie_inside_and_apart(dataset: Path, truth: pd.DataFrame):
    """2–4 muscles, each ≥ 2 px from the image edge, none touching another even after a 1-px dilation."""
    for case in truth["case"].unique():
        _, label, _ = _case(dataset.parent, case)
        assert label.shape == (256, 256) and set(np.unique(label)) <= {0, *CLASSES.values()}
        values = [v for v in np.unique(label) if v]
        assert 2 <= len(values) <= 4
        for value in values:
            x, y = np.nonzero(label == value)
            assert min(x.min(), y.min()) >= 2 and max(x.max(), y.max()) <= 253
            grown = binary_dilation(label == value)
            assert not np.any(grown & (label > 0) & (label != value)), (case, value)


def test_pixel_area_and_perimeter_match_the_truth(dataset: Path, truth: pd.DataFrame):
    for row in truth.itertuples():
        _, label, spacing = _case(dataset.parent, row.case)
        mask = label == row.value
        assert mask.sum() * spacing**2 == pytest.approx(row.area_mm2, rel=0.015), (row.case, row.structure)
        assert perimeter_crofton(mask, 4) * spacing == pytest.approx(row.perimeter_mm, rel=0.05)
        assert row.perimeter_mm**2 >= 4 * np.pi * row.area_mm2  # no region beats the disc


def test_echo_intensity_is_that_of_the_saved_png(dataset: Path, truth: pd.DataFrame):
    for row in truth.itertuples():
        grey, label, _ = _case(dataset.parent, row.case)
        inside = grey[label == row.value].astype(np.float64)
        assert row.echo_intensity == pytest.approx(inside.mean(), abs=1e-6)
        assert row.echo_intensity_sd == pytest.approx(inside.std(ddof=0), abs=1e-6)
        assert 0 < row.echo_intensity < 255


def test_echo_intensity_and_size_vary(truth: pd.DataFrame):
    assert truth["echo_intensity"].max() - truth["echo_intensity"].min() >= 20
    assert truth.groupby("case")["echo_intensity"].agg(np.ptp).max() >= 5  # muscles of one case differ
    assert truth["area_mm2"].max() / truth["area_mm2"].min() >= 3
    assert truth["structure"].nunique() == 4


def test_datalist_loads_with_classes_and_spacing(dataset: Path):
    raw = json.loads(dataset.read_text())
    assert raw["classes"] == CLASSES
    entries = load_datalist(dataset, "training")
    assert sum(len(raw[split]) for split in ("training", "validation", "test")) == N
    for entry in entries:
        assert Path(entry["image"]).is_file() and Path(entry["label"]).is_file()
        assert len(entry["spacing"]) == 2 and 0.2 <= entry["spacing"][0] == entry["spacing"][1] <= 0.3


def test_fascia_is_bright_and_the_femur_shadows():
    """The 1-px ring outside each label (its fascia) is brighter than inside; below the femur's cortex the
    image is darker than at the same depths beside the bone."""
    rims = []
    for i in range(4):
        phantom = make_phantom(np.random.default_rng([SEED, i]))
        grey = np.round(phantom.image * 255)
        for structure in phantom.structures.values():
            mask = phantom.label == structure.value
            rim = binary_dilation(mask) & ~mask
            rims.append(grey[rim].mean() - grey[mask].mean())
        femur, spacing = phantom.anatomy.femur, phantom.spacing[0]
        x, y = np.meshgrid(*(np.arange(n) * spacing for n in phantom.image.shape), indexing="ij")
        lateral = np.abs(x - femur.centre[0])
        below = (lateral < 0.8 * femur.radius) & (y > femur.centre[1] - femur.radius + femur.cortex + 2.0)
        beside = (lateral > femur.radius + 3.0) & np.any(below, axis=0)[None, :]
        assert grey[below].mean() < 0.75 * grey[beside].mean()
    assert min(rims) > 0 and np.median(rims) > 20
