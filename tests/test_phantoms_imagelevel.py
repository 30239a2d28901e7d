"""Image-level phantoms: classify2d (four muscles, myopathic muscle), regress2d (joint angle, activation)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter
from scipy.stats import spearmanr

from sonomuscle.data.phantoms import PHANTOM_MODULES, classify2d, regress2d, write_phantom_dataset
from sonomuscle.data.phantoms.architecture2d import normal_distance
from sonomuscle.data.phantoms.classify2d import (
    CLASS_NAMES,
    MUSCLE_TYPES,
    MYOPATHIC,
    SHAPE,
    SPACING_MM,
    layered_geometry,
    muscle_region,
)
from sonomuscle.data.readers import load_image
from sonomuscle.errors import InputError

N, SEED = 40, 3
MODULES = {"classify2d": classify2d, "regress2d": regress2d}
SMALLEST = {"classify2d": 9, "regress2d": 11}  # three subjects
GRID = np.meshgrid(*(np.arange(n) * SPACING_MM for n in SHAPE), indexing="ij")  # x, y in mm


@pytest.fixture(scope="module")
def classify(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Forty classification cases written through the CLI's registry; returns the folder."""
    return write_phantom_dataset("classify2d", tmp_path_factory.mktemp("classify2d"), n=N, seed=SEED).parent


@pytest.fixture(scope="module")
def regress(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_phantom_dataset("regress2d", tmp_path_factory.mktemp("regress2d"), n=N, seed=SEED).parent


def _grey(folder: Path, case: str) -> np.ndarray:
    grey, _ = load_image(folder / "images" / f"{case}.png")
    return grey.astype(np.float64)


def _geometry(row: pd.Series):
    """The geometry the truth row describes, rebuilt from its parameters."""
    return layered_geometry(
        dermis=row.dermis_mm,
        fat_mm=row.fat_mm,
        bands=(row.superficial_band_mm, row.deep_band_mm),
        tilts_deg=(row.superficial_tilt_deg, row.deep_tilt_deg),
        thickness_mm=row.thickness_mm,
        pennation_deg=row.pennation_angle_deg,
        side=row.fascicle_side,
        central_band_mm=getattr(row, "central_band_mm", 0.0),
    )


def test_registered_for_the_cli():
    for task in MODULES:
        assert PHANTOM_MODULES[task] == f"sonomuscle.data.phantoms.{task}"


@pytest.mark.parametrize("task", MODULES)
def test_too_few_cases_for_three_subjects_is_an_input_error(task: str, tmp_path: Path):
    with pytest.raises(InputError, match=f"needs 3 \\(n ≥ {SMALLEST[task]}\\)"):
        MODULES[task].write_dataset(tmp_path, n=SMALLEST[task] - 1, seed=0)


@pytest.mark.parametrize("task", MODULES)
def test_deterministic_and_a_case_does_not_depend_on_n(
    task: str, classify: Path, regress: Path, tmp_path: Path
):
    large = {"classify2d": classify, "regress2d": regress}[task]
    n = SMALLEST[task]
    first = MODULES[task].write_dataset(tmp_path / "a", n=n, seed=SEED).parent
    again = MODULES[task].write_dataset(tmp_path / "b", n=n, seed=SEED).parent
    for path in sorted(first.rglob("*.*")):
        assert path.read_bytes() == (again / path.relative_to(first)).read_bytes(), path.name
    for path in sorted(first.glob("images/*.png")):
        assert path.read_bytes() == (large / path.relative_to(first)).read_bytes(), path.name
    small = pd.read_csv(first / "truth.csv")
    pd.testing.assert_frame_equal(small, pd.read_csv(large / "truth.csv").iloc[:n])
    other = MODULES[task].write_dataset(tmp_path / "c", n=n, seed=SEED + 1).parent
    assert (other / "images/case_000.png").read_bytes() != (first / "images/case_000.png").read_bytes()


@pytest.mark.parametrize("task", MODULES)
def test_files_tables_and_subject_split(task: str, classify: Path, regress: Path):
    folder = {"classify2d": classify, "regress2d": regress}[task]
    labels, truth = pd.read_csv(folder / "labels.csv"), pd.read_csv(folder / "truth.csv")
    columns = ["muscle"] if task == "classify2d" else ["angle", "activation"]
    assert list(labels.columns) == ["image", "subject", *columns]
    assert list(labels["image"]) == [f"case_{i:03d}.png" for i in range(N)]
    assert (truth["case"] + ".png").tolist() == labels["image"].tolist()
    assert (truth["subject"] == labels["subject"]).all() and (truth["spacing_mm"] == SPACING_MM).all()
    for column in columns:  # the user's table holds the truth (numbers to 6 significant digits)
        if task == "classify2d":
            assert (labels[column] == truth[column]).all()
        else:
            np.testing.assert_allclose(labels[column], truth[column], rtol=1e-5)
    with Image.open(folder / "images/case_000.png") as png:  # 8-bit greyscale, rows are depth
        assert png.mode == "L" and png.size == SHAPE and 20 < np.asarray(png).mean() < 200

    datalist = json.loads((folder / "datalist.json").read_text())
    if task == "classify2d":
        assert datalist["class_names"] == list(CLASS_NAMES)
    else:
        assert datalist["targets"] == ["angle", "activation"]
    by_image = labels.set_index("image")
    subjects = {}
    for split in ("training", "validation", "test"):
        assert datalist[split], split
        subjects[split] = {entry["subject"] for entry in datalist[split]}
        for entry in datalist[split]:
            row = by_image.loc[Path(entry["image"]).name]
            assert entry["image"].startswith("images/") and entry["subject"] == row["subject"]
            if task == "classify2d":
                assert entry["class"] == row["muscle"] == CLASS_NAMES[entry["label"]]
            else:
                np.testing.assert_allclose(entry["label"], [row["angle"], row["activation"]])
    assert sum(len(datalist[s]) for s in subjects) == N
    assert not (subjects["training"] & subjects["test"]) and not (subjects["validation"] & subjects["test"])


def test_every_class_present_and_myopathic_the_rarest(classify: Path):
    truth = pd.read_csv(classify / "truth.csv")
    counts = truth["muscle"].value_counts()
    assert set(counts.index) == set(CLASS_NAMES)
    assert counts[MYOPATHIC] == N // 10 and counts[MYOPATHIC] < counts[list(MUSCLE_TYPES)].min()
    assert set(truth.loc[truth["myopathic"] == 1, "muscle_type"]) <= set(MUSCLE_TYPES)
    assert (truth["muscle"] == np.where(truth["myopathic"] == 1, MYOPATHIC, truth["muscle_type"])).all()
    # a subject shows several classes
    assert truth.groupby("subject")["muscle"].nunique().min() >= 3


def test_muscles_differ_as_drawn(classify: Path):
    """Pennation orders the muscles (biceps < tibialis < vastus < gastrocnemius on average); only the tibialis
    has a central aponeurosis, and the gastrocnemius is the thinnest."""
    truth = pd.read_csv(classify / "truth.csv")
    by_type = truth.groupby("muscle_type")
    pennation = by_type["pennation_angle_deg"].mean()
    order = ["biceps_brachii", "tibialis_anterior", "vastus_lateralis", "gastrocnemius_medialis"]
    assert list(pennation[order]) == sorted(pennation)
    assert by_type["thickness_mm"].mean().idxmin() == "gastrocnemius_medialis"
    assert ((truth["central_band_mm"] > 0) == (truth["muscle_type"] == "tibialis_anterior")).all()


def test_truth_rebuilds_the_geometry(classify: Path, regress: Path):
    """The truth row holds every parameter of the geometry: rebuilt, its muscle is as thick as the truth says,
    and its muscle region is darker than its aponeuroses in the saved image."""
    x, y = GRID
    for folder in (classify, regress):
        for row in pd.read_csv(folder / "truth.csv").iloc[:10].itertuples():
            g = _geometry(row)
            xc = (SHAPE[0] - 1) / 2 * SPACING_MM
            assert normal_distance(xc, g.deep, g.superficial) == pytest.approx(row.thickness_mm, abs=1e-9)
            grey = _grey(folder, row.case)
            muscle = muscle_region(g)
            band = (y >= g.deep.y(x)) & (y < g.deep.y(x) + g.band_d)
            assert grey[band].mean() > grey[muscle].mean() + 10, row.case
            assert grey[muscle].mean() == pytest.approx(row.echo_intensity)


def _stroke_contrast(case: classify2d.Case) -> float:
    """Mean grey on the traced fascicles over the muscle's mean, minus 1: how much the striations stand out."""
    grey = np.round(case.image * 255)
    strokes = (case.fascicle > 0) & case.muscle
    return grey[strokes].mean() / grey[case.muscle].mean() - 1


@pytest.mark.parametrize("muscle_type", MUSCLE_TYPES)
def test_myopathic_muscle_is_brighter_and_not_striated(muscle_type: str):
    """The same draws healthy and myopathic: the muscle's mean grey rises by 40–80 % (median), the fascicles
    stop standing out, and outside the muscle the image hardly changes."""
    x, y = GRID
    ratios = []
    for i in range(6):
        subject = classify2d.draw_subject(SEED, i)
        healthy, myopathic = (
            classify2d.make_case(np.random.default_rng([SEED, i]), subject, muscle_type, sick)
            for sick in (False, True)
        )
        assert np.array_equal(healthy.muscle, myopathic.muscle)
        grey = [np.round(case.image * 255) for case in (healthy, myopathic)]
        ratios.append(grey[1][healthy.muscle].mean() / grey[0][healthy.muscle].mean())
        above = y < healthy.geometry.superficial.y(x) - healthy.geometry.band_s - 1.0  # skin and fat
        assert abs(grey[1][above].mean() - grey[0][above].mean()) < 2.0
        if (
            muscle_type != "tibialis_anterior"
        ):  # its traced strokes run through both halves of the herringbone
            assert _stroke_contrast(healthy) > 0.2 and _stroke_contrast(myopathic) < 0.1
    assert min(ratios) > 1.2 and 1.4 <= np.median(ratios) <= 1.8


def _bend(grey: np.ndarray, one: np.ndarray, other: np.ndarray) -> float:
    """How much (degrees) the texture in region ``other`` is turned from that in ``one``: the angle between
    the mean orientations of their grey gradients (structure tensors, as doubled angles: it does not wrap)."""
    gx, gy = np.gradient(gaussian_filter(grey, 1.0))
    tensor = [gaussian_filter(v, 3.0) for v in (gx * gx - gy * gy, 2 * gx * gy)]
    one, other = (complex(tensor[0][r].mean(), tensor[1][r].mean()) for r in (one, other))
    return 0.5 * math.degrees(np.angle(other * one.conjugate()))


def test_regression_cues_follow_the_targets(regress: Path):
    """In the truth: pennation rises with activation and the deep aponeurosis tilts with the angle; in the
    saved pixels: the striations bend (their orientation differs between the muscle's ends) with activation,
    and the deep aponeurosis, found as the brightest band near its true depth, tilts with the angle."""
    x, y = GRID
    truth = pd.read_csv(regress / "truth.csv")
    assert spearmanr(truth["activation"], truth["pennation_angle_deg"])[0] > 0.6
    assert spearmanr(truth["angle"], truth["deep_tilt_deg"])[0] > 0.95
    np.testing.assert_allclose(
        truth["fascicle_curvature_per_mm"], regress2d.ACTIVATION_CURVATURE * truth["activation"]
    )
    bends, tilts = [], []
    columns = np.arange(20, SHAPE[0] - 20)
    for row in truth.itertuples():
        g, grey = _geometry(row), _grey(regress, row.case)
        inner = muscle_region(g) & (y > g.superficial.y(x) + 1.5) & (y < g.deep.y(x) - 1.5)
        third = SHAPE[0] * SPACING_MM / 3
        bends.append(_bend(grey, inner & (x < third), inner & (x > 2 * third)))
        smooth = gaussian_filter(grey, (2.0, 1.0))
        expected = np.round(g.deep.y(x[columns, 0]) / SPACING_MM).astype(int)
        window = np.arange(-16, 17)  # ±4 mm
        depth = expected[:, None] + window
        found = depth[np.arange(len(columns)), np.argmax(smooth[columns[:, None], depth], axis=1)]
        tilts.append(np.polyfit(columns, found, 1)[0])
    assert spearmanr(truth["activation"], bends)[0] > 0.8
    assert spearmanr(truth["angle"], tilts)[0] > 0.9


def test_subjects_differ_and_span_the_ranges(classify: Path, regress: Path):
    truth = pd.read_csv(regress / "truth.csv")
    subject_columns = ["subject_pennation_deg", "subject_thickness_mm", "subject_gain_db", "fat_mm"]
    per_subject = truth.groupby("subject")[subject_columns]
    assert (per_subject.nunique() == 1).all().all()  # shared within a subject
    assert (per_subject.first().nunique() == truth["subject"].nunique()).all()  # different between
    assert truth["subject"].nunique() == 6  # 5 + 5 + 5 + 10 + 10 + 5 cases
    full = truth.groupby("subject").filter(lambda rows: len(rows) == regress2d.CASES_PER_SUBJECT)
    spans = full.groupby("subject")[["angle", "activation"]].agg(lambda v: v.max() - v.min())
    assert (spans["angle"] > 45).all() and (spans["activation"] > 0.5).all()
    classes = pd.read_csv(classify / "truth.csv")
    assert classes["subject"].nunique() == 7  # 4 + 4 + 4 + 8 + 8 + 8 + 4 cases
    assert (classes.groupby("subject")["subject_gain_db"].nunique() == 1).all()
    assert classes.groupby("subject")["subject_gain_db"].first().nunique() == 7
