"""B-mode physics (speckle, PSF, attenuation, shadow) and the longitudinal architecture phantoms."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sonomuscle.data.phantoms import write_phantom_dataset
from sonomuscle.data.phantoms.architecture2d import (
    MAX_CONVERGENCE_DEG,
    PENNATION_RANGE_DEG,
    THICKNESS_RANGE_MM,
    TRUTH_COLUMNS,
    make_phantom,
)
from sonomuscle.data.phantoms.physics import (
    acoustic_shadow,
    axial_sigma_mm,
    beam_sigma_mm,
    simulate_bmode,
)
from sonomuscle.data.readers import load_image
from sonomuscle.errors import InputError

QUIET = {"noise_db": -200.0, "specular_density": 0.0}  # pure speckle: no receiver noise, no point reflectors


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- physics


def test_speckle_is_rayleigh_and_calibrated():
    """Fully developed speckle: envelope SNR = mean/std ≈ 1.91 and unit echogenicity has unit mean power."""
    envelope = simulate_bmode(np.ones((256, 256)), (0.2, 0.2), _rng(), return_envelope=True, **QUIET)
    assert envelope.mean() / envelope.std() == pytest.approx(1.91, abs=0.06)
    assert np.mean(envelope**2) == pytest.approx(1.0, rel=0.1)
    # amplitude scales with echogenicity: 0.1 is 20 dB darker
    darker = simulate_bmode(np.full((256, 256), 0.1), (0.2, 0.2), _rng(), return_envelope=True, **QUIET)
    assert 10 * np.log10(np.mean(darker**2)) == pytest.approx(-20.0, abs=1.0)


def test_image_range_dtype_and_determinism():
    echo = np.full((96, 128), 0.3, dtype=np.float32)
    first = simulate_bmode(echo, (0.2, 0.2), _rng(1))
    assert first.dtype == np.float32 and first.shape == echo.shape
    assert first.min() >= 0.0 and first.max() <= 1.0 and 0.2 < first.mean() < 0.95
    np.testing.assert_array_equal(first, simulate_bmode(echo, (0.2, 0.2), _rng(1)))
    assert not np.array_equal(first, simulate_bmode(echo, (0.2, 0.2), _rng(2)))


def _psf_sigmas(frequency: float) -> tuple[float, float]:
    """Lateral and axial standard deviation (mm) of the envelope of one point reflector."""
    spacing = (0.02, 0.01)
    echo = np.zeros((200, 120), dtype=np.float32)
    echo[100, 60] = 1.0
    envelope = simulate_bmode(
        echo,
        spacing,
        _rng(),
        centre_frequency_mhz=frequency,
        specular_density=1.0,
        noise_db=-200.0,
        tgc=False,
        return_envelope=True,
    )
    sigmas = []
    for axis in (0, 1):
        profile = envelope.max(axis=1 - axis).astype(float)
        position = np.arange(profile.size) * spacing[axis]
        centre = np.sum(position * profile) / profile.sum()
        sigmas.append(math.sqrt(np.sum((position - centre) ** 2 * profile) / profile.sum()))
    return sigmas[0], sigmas[1]


def test_psf_extent_follows_frequency():
    lateral_5, axial_5 = _psf_sigmas(5.0)
    lateral_10, axial_10 = _psf_sigmas(10.0)
    # the envelope of a point matches the designed beam and pulse widths ...
    assert lateral_5 == pytest.approx(beam_sigma_mm(5.0, 2.5), rel=0.1)
    assert axial_5 == pytest.approx(axial_sigma_mm(5.0, 0.6), rel=0.15)
    # ... and halves when the frequency doubles
    assert lateral_5 / lateral_10 == pytest.approx(2.0, rel=0.1)
    assert axial_5 / axial_10 == pytest.approx(2.0, rel=0.15)


def test_attenuation_darkens_depth_unless_compensated():
    echo, spacing = np.ones((128, 256)), (0.2, 0.2)  # 51 mm deep
    args = {"centre_frequency_mhz": 5.0, "attenuation_db_cm_mhz": 0.5, "return_envelope": True, **QUIET}
    raw = simulate_bmode(echo, spacing, _rng(), tgc=False, **args)
    compensated = simulate_bmode(echo, spacing, _rng(), tgc=True, **args)
    shallow, deep = slice(0, 64), slice(192, 256)  # centres 6.4 mm and 44.8 mm deep
    expected_db = -0.5 * 5.0 * 2 * (44.8 - 6.4) / 10  # two-way, dB
    drop_db = 10 * np.log10(np.mean(raw[:, deep] ** 2) / np.mean(raw[:, shallow] ** 2))
    assert drop_db == pytest.approx(expected_db, abs=1.0)
    flat_db = 10 * np.log10(np.mean(compensated[:, deep] ** 2) / np.mean(compensated[:, shallow] ** 2))
    assert abs(flat_db) < 1.0


def test_volume_and_other_depth_axis():
    echo = np.full((32, 48, 24), 0.5, dtype=np.float32)
    volume = simulate_bmode(echo, (0.2, 0.1, 0.3), _rng())
    assert volume.shape == echo.shape and volume.dtype == np.float32
    assert volume.min() >= 0.0 and volume.max() <= 1.0
    # elevation blurs too: speckle intensity correlates between slices as exp(-lag² / 2σ²), σ the beam's
    envelope = simulate_bmode(echo, (0.2, 0.1, 0.3), _rng(), return_envelope=True, **QUIET)
    near = np.corrcoef(envelope[:, :, 10].ravel(), envelope[:, :, 11].ravel())[0, 1]
    far = np.corrcoef(envelope[:, :, 2].ravel(), envelope[:, :, 20].ravel())[0, 1]
    sigma_px = beam_sigma_mm(10.0, 4.0) / 0.3
    assert near == pytest.approx(math.exp(-1 / (2 * sigma_px**2)), abs=0.08) and abs(far) < 0.1
    # depth on axis 0: the same physics, transposed
    moved = simulate_bmode(np.moveaxis(echo, 1, 0), (0.1, 0.2, 0.3), _rng(), depth_axis=0)
    assert moved.shape == (48, 32, 24)


def test_acoustic_shadow_dims_below_reflector_only():
    echo = np.full((8, 40, 3), 0.5, dtype=np.float32)
    bone = np.zeros(echo.shape, dtype=bool)
    bone[:4, 10:15] = True  # 5 voxels × 0.2 mm = 1 mm of cortex under the left half
    shadowed = acoustic_shadow(echo, bone, (0.2, 0.2, 0.2), attenuation_per_mm=3.0)
    np.testing.assert_allclose(shadowed[:, :11], 0.5)  # above and at the surface
    np.testing.assert_allclose(shadowed[:4, 20:], 0.5 * math.exp(-3.0 * 1.0), rtol=1e-5)
    np.testing.assert_allclose(shadowed[4:], 0.5)  # beside the bone
    with pytest.raises(InputError, match="does not match"):
        acoustic_shadow(echo, bone[:, :, :1], (0.2, 0.2, 0.2))


@pytest.mark.parametrize(
    ("echo", "spacing", "problem"),
    [
        (np.ones(16), (0.2,), "2D"),
        (np.ones((8, 8)), (0.2,), "spacing"),
        (np.full((8, 8), np.nan), (0.2, 0.2), "finite"),
    ],
)
def test_bad_maps_are_input_errors(echo, spacing, problem):
    with pytest.raises(InputError, match=problem):
        simulate_bmode(echo, spacing, _rng())


# ---------------------------------------------------------------- phantoms


@pytest.fixture(scope="module")
def phantoms():
    return [make_phantom(np.random.default_rng([7, i])) for i in range(4)]


def _edges(aponeurosis: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column: deep edge of the first band, superficial edge of the second (pixel units), band widths."""
    deep_of_first, top_of_second, widths = [], [], []
    for column in aponeurosis:
        rows = np.flatnonzero(column)
        runs = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)
        assert len(runs) == 2, "each column crosses exactly two aponeurosis bands"
        deep_of_first.append(runs[0][-1] + 0.5)
        top_of_second.append(runs[1][0] - 0.5)
        widths += [len(runs[0]), len(runs[1])]
    return np.array(deep_of_first), np.array(top_of_second), np.array(widths)


def test_phantom_arrays(phantoms):
    for p in phantoms:
        assert p.image.shape == p.aponeurosis.shape == p.fascicle.shape == (256, 256)
        assert p.image.dtype == np.float32 and p.image.min() >= 0.0 and p.image.max() <= 1.0
        assert p.aponeurosis.dtype == p.fascicle.dtype == np.uint8
        assert set(np.unique(p.aponeurosis)) == {0, 1} and set(np.unique(p.fascicle)) == {0, 1}
        assert p.spacing == (0.2, 0.2)
        # the aponeuroses are the brightest tissue: brighter than the muscle between them
        s, d, _ = _edges(p.aponeurosis)
        y = np.arange(256)[None, :]
        muscle = (y > s[:, None] + 2) & (y < d[:, None] - 2)
        assert p.image[p.aponeurosis == 1].mean() > p.image[muscle].mean() + 0.15


def test_truth_matches_mask_geometry(phantoms):
    """Thickness re-derived from the masks' band edges agrees with the truth to about one pixel."""
    for p in phantoms:
        t = p.truth
        assert list(t) == list(TRUTH_COLUMNS[1:])
        assert THICKNESS_RANGE_MM[0] <= t["thickness_mm"] <= THICKNESS_RANGE_MM[1]
        assert PENNATION_RANGE_DEG[0] <= t["pennation_angle_deg"] <= PENNATION_RANGE_DEG[1]
        s, d, widths = _edges(p.aponeurosis)
        spacing = p.spacing[0]
        assert 0.6 - spacing <= widths.min() * spacing and widths.max() * spacing <= 1.5 + spacing
        x = np.arange(256) * spacing
        b_s, a_s = np.polyfit(x, s * spacing, 1)
        b_d, a_d = np.polyfit(x, d * spacing, 1)
        assert max(abs(math.degrees(math.atan(b))) for b in (b_s, b_d)) <= 4.0 + 0.2
        assert abs(math.degrees(math.atan(b_s) - math.atan(b_d))) <= MAX_CONVERGENCE_DEG + 0.2
        xc = 127.5 * spacing
        # from L_d at the centre along its normal (b_d, -1)/r to L_s
        r = math.hypot(1.0, b_d)
        n = np.array([b_d, -1.0]) / r
        distance = (a_s + b_s * xc - (a_d + b_d * xc)) / (n[1] - b_s * n[0])
        assert distance == pytest.approx(t["thickness_mm"], abs=0.25)
        assert t["thickness_mean_mm"] == pytest.approx(t["thickness_mm"], abs=3.0 * abs(b_s - b_d) * 25.6)


def test_fascicle_strokes(phantoms):
    """Strokes lie inside the muscle, at the pennation angle to the deep aponeurosis, 5–25 mm long."""
    from skimage.measure import label, regionprops

    for p in phantoms:
        s, d, _ = _edges(p.aponeurosis)
        xs, ys = np.nonzero(p.fascicle)
        assert len(xs) > 0
        assert np.all(ys > s[xs]) and np.all(ys < d[xs])
        slope_d = np.polyfit(np.arange(256), d, 1)[0]
        for region in regionprops(label(p.fascicle, connectivity=2)):
            coords = region.coords.astype(float)
            extent = np.ptp(coords @ np.linalg.svd(coords - coords.mean(0))[2][0]) * p.spacing[0]
            assert extent <= 25.0 + 0.5
            if extent >= 8.0:  # short fragments' directions are too coarse to check
                direction = np.linalg.svd(coords - coords.mean(0))[2][0]
                angle = math.degrees(
                    math.acos(abs(direction @ np.array([1.0, slope_d]) / math.hypot(1, slope_d)))
                )
                assert angle == pytest.approx(p.truth["pennation_angle_deg"], abs=2.0)
        # a fascicle spans the muscle at angle θ: its length is about thickness / sin θ
        theta = math.radians(p.truth["pennation_angle_deg"])
        assert p.truth["fascicle_length_mm"] == pytest.approx(
            p.truth["thickness_mm"] / math.sin(theta), rel=0.35
        )


def test_phantom_is_deterministic():
    a, b = (make_phantom(np.random.default_rng(11)) for _ in range(2))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.fascicle, b.fascicle)
    assert a.truth == b.truth
    assert make_phantom(np.random.default_rng(12)).truth != a.truth


def test_write_dataset_files_and_datalist(tmp_path: Path):
    n, seed = 4, 5
    datalist_path = write_phantom_dataset("architecture2d", tmp_path / "a", n=n, seed=seed)
    datalist = json.loads(datalist_path.read_text())
    assert {k: len(v) for k, v in datalist.items()} == {"training": 2, "validation": 1, "test": 1}
    entries = [e for part in datalist.values() for e in part]
    truth = pd.read_csv(tmp_path / "a" / "truth.csv")
    assert list(truth.columns) == list(TRUTH_COLUMNS) and len(truth) == n
    for entry in entries:
        assert entry["spacing"] == [0.2, 0.2]
        i = int(Path(entry["image"]).stem.split("_")[1])
        phantom = make_phantom(np.random.default_rng([seed, i]))
        # loads back as (X, Y) through the library's reader, equal to the phantom
        image, _ = load_image(datalist_path.parent / entry["image"])
        np.testing.assert_array_equal(image, np.round(phantom.image * 255))
        for key in ("aponeurosis", "fascicle"):
            mask, _ = load_image(datalist_path.parent / entry[key], mask=True)
            np.testing.assert_array_equal(mask, getattr(phantom, key))
        assert Image.open(datalist_path.parent / entry["image"]).mode == "L"
        row = truth.set_index("case").loc[f"case_{i:03d}"]
        assert row["thickness_mm"] == pytest.approx(phantom.truth["thickness_mm"])
        assert row["fascicle_length_mm"] == pytest.approx(phantom.truth["fascicle_length_mm"])

    # same seed → same bytes
    again = write_phantom_dataset("architecture2d", tmp_path / "b", n=n, seed=seed).parent
    for path in sorted((tmp_path / "a").rglob("*.*")):
        assert path.read_bytes() == (again / path.relative_to(tmp_path / "a")).read_bytes(), path.name


def test_unknown_task_is_an_input_error(tmp_path: Path):
    with pytest.raises(InputError, match="unknown phantom task"):
        write_phantom_dataset("transverse", tmp_path, n=1, seed=0)


def _contrast(image: np.ndarray, aponeurosis: np.ndarray) -> float:
    """Mean grey of the aponeuroses minus that of the muscle between them (columns crossing two bands)."""
    bands, muscle = [], []
    for column, mask in zip(image, aponeurosis, strict=True):
        rows = np.flatnonzero(mask)
        runs = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1) if rows.size else []
        if len(runs) == 2 and runs[1][0] - runs[0][-1] > 10:
            bands.append(column[rows])
            muscle.append(column[runs[0][-1] + 5 : runs[1][0] - 5])
    return float(np.concatenate(bands).mean() - np.concatenate(muscle).mean()) if bands else math.nan


def test_contrast_resembles_real_images(phantoms, dl_track_dir: Path):
    """Aponeurosis-to-muscle grey-level contrast of the phantoms lies within that of the real images."""
    real = []
    for path in sorted((dl_track_dir / "aponeurosis" / "images").glob("*.png"))[::10]:
        image, _ = load_image(path)
        mask, _ = load_image(dl_track_dir / "aponeurosis" / "masks" / path.name, mask=True)
        real.append(_contrast(image / 255.0, mask))
    low, high = np.nanpercentile(real, [5, 95])
    assert np.isfinite(real).sum() >= 20
    for p in phantoms:
        assert low <= _contrast(p.image, p.aponeurosis) <= high
