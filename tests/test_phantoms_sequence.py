"""Cine loops of a contracting pennate muscle: time course, coherent frames, lossless video, exact truth."""

from __future__ import annotations

import json
import math
from itertools import pairwise
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from sonomuscle.cli import build_parser
from sonomuscle.data.phantoms import PHANTOM_MODULES
from sonomuscle.data.phantoms.architecture2d_sequence import (
    ANGLE_CHANGE_RANGE_DEG,
    FPS,
    REST_ANGLE_RANGE_DEG,
    TRUTH_COLUMNS,
    activation,
    make_loop,
    write_dataset,
)
from sonomuscle.errors import InputError
from sonomuscle.measures.architecture import measure_architecture

# short, small loops: 9 frames sample rest, ramp, hold, ramp and rest (frames 0–1, 2–3, 4, 5–6, 7–8)
FRAMES, SHAPE, SPACING = 9, (192, 192), 0.2
REST, PEAK = 0, 4


@pytest.fixture(scope="module")
def loop():
    return make_loop(np.random.default_rng([3, 0]), FRAMES, SHAPE, SPACING)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_activation_is_rest_ramp_hold_ramp_rest():
    level = activation(60)
    assert level[0] == level[-1] == 0.0 and level.max() == 1.0
    assert np.all((level >= 0.0) & (level <= 1.0))
    np.testing.assert_allclose(level, level[::-1], atol=1e-12)  # ramp down mirrors ramp up
    assert np.abs(np.diff(level)).max() < 0.15  # smooth: no jump between frames
    held = np.flatnonzero(level == 1.0)
    assert np.all(np.diff(held) == 1) and len(held) >= 10  # one hold, ≥ 0.4 s at 25 fps
    assert np.all(level[:8] == 0.0) and np.all(level[-8:] == 0.0)  # rest at both ends
    assert activation(1).tolist() == [0.0]
    with pytest.raises(InputError, match="frame"):
        activation(0)


def test_truth_follows_the_time_course(loop):
    assert len(loop.frames) == FRAMES and loop.activation[PEAK] == 1.0
    assert REST_ANGLE_RANGE_DEG[0] <= loop.rest_angle_deg <= REST_ANGLE_RANGE_DEG[1]
    assert ANGLE_CHANGE_RANGE_DEG[0] <= loop.angle_change_deg <= ANGLE_CHANGE_RANGE_DEG[1]
    assert 0.02 <= abs(loop.thickness_change) <= 0.05
    rest = loop.frames[REST].truth
    for level, frame in zip(loop.activation, loop.frames, strict=True):
        t = frame.truth
        assert t["spacing_mm"] == SPACING and frame.spacing == (SPACING, SPACING)
        expected_angle = loop.rest_angle_deg + level * loop.angle_change_deg
        assert t["pennation_angle_deg"] == pytest.approx(expected_angle, abs=1e-9)
        expected_thickness = rest["thickness_mm"] * (1 + level * loop.thickness_change)
        assert t["thickness_mm"] == pytest.approx(expected_thickness, abs=1e-9)
        # the fascicles span the muscle at the angle: length ≈ thickness / sin θ
        theta = math.radians(t["pennation_angle_deg"])
        assert t["fascicle_length_mm"] == pytest.approx(t["thickness_mm"] / math.sin(theta), rel=0.35)
    peak = loop.frames[PEAK].truth
    assert peak["pennation_angle_deg"] - rest["pennation_angle_deg"] == pytest.approx(loop.angle_change_deg)
    assert peak["fascicle_length_mm"] < 0.9 * rest["fascicle_length_mm"]  # fascicles shorten as they turn
    assert loop.frames[-1].truth == rest  # back at rest: the same geometry, the same truth


def test_frames_are_coherent(loop):
    """One texture in every frame: rest frames are identical, moving frames stay highly correlated."""
    images = [frame.image for frame in loop.frames]
    np.testing.assert_array_equal(images[0], images[1])
    np.testing.assert_array_equal(images[0], images[-1])
    # steps here reach ~5° (a 60-frame loop's stay ≤ 1.1°): still one speckle pattern
    for a, b in pairwise(images):
        assert _correlation(a, b) > 0.85
    assert _correlation(images[REST], images[PEAK]) > 0.7  # the speckle stays, only the geometry moves
    other = make_loop(np.random.default_rng([3, 1]), 1, SHAPE, SPACING).frames[0].image
    assert abs(_correlation(images[REST], other)) < 0.5  # an independent loop looks different


@pytest.mark.parametrize("index", [REST, 2, PEAK])
def test_masks_measure_to_truth(loop, index):
    """The architecture measure on a frame's truth masks gives its truth (tolerances as for single phantoms)."""
    frame = loop.frames[index]
    result = measure_architecture(frame.aponeurosis, frame.fascicle, frame.spacing)
    assert result.thickness == pytest.approx(frame.truth["thickness_mm"], abs=0.3)
    assert result.thickness_mean == pytest.approx(frame.truth["thickness_mean_mm"], abs=0.3)
    assert result.pennation_angle == pytest.approx(frame.truth["pennation_angle_deg"], abs=1.0)
    assert result.fascicle_length == pytest.approx(frame.truth["fascicle_length_mm"], rel=0.03)


def test_write_dataset_video_truth_and_calibration(tmp_path: Path):
    n, seed, frames, shape = 2, 4, 5, (224, 192)  # wider than deep: rows must be depth
    sequences_path = write_dataset(tmp_path / "a", n, seed, n_frames=frames, shape=shape, spacing=SPACING)
    sequences = json.loads(sequences_path.read_text())
    truth = pd.read_csv(tmp_path / "a" / "truth.csv")
    assert list(truth.columns) == list(TRUTH_COLUMNS) and len(truth) == n * frames
    assert [entry["video"] for entry in sequences["loops"]] == ["loop_000.mp4", "loop_001.mp4"]
    for i, entry in enumerate(sequences["loops"]):
        assert (entry["fps"], entry["frames"], entry["spacing"]) == (FPS, frames, [SPACING, SPACING])
        loop = make_loop(np.random.default_rng([seed, i]), frames, shape, SPACING)
        with av.open(str(sequences_path.parent / entry["video"])) as container:
            stream = container.streams.video[0]
            assert stream.average_rate == FPS
            decoded = [(frame.time, frame.to_ndarray(format="gray")) for frame in container.decode(stream)]
        assert len(decoded) == frames
        for k, (time_s, grey) in enumerate(decoded):
            assert grey.shape == (shape[1], shape[0]) and grey.dtype == np.uint8
            assert time_s == pytest.approx(k / FPS)
            expected = np.round(loop.frames[k].image * 255).T
            assert np.abs(grey.astype(float) - expected).max() <= 1.0
        rows = truth[truth["loop"] == entry["loop"]].reset_index(drop=True)
        assert rows["frame"].tolist() == list(range(frames))
        np.testing.assert_allclose(rows["time_s"], np.arange(frames) / FPS)
        for column in TRUTH_COLUMNS[3:]:
            np.testing.assert_allclose(
                rows[column], [frame.truth[column] for frame in loop.frames], rtol=1e-12
            )

    # same seed → same bytes
    again = write_dataset(tmp_path / "b", n, seed, n_frames=frames, shape=shape, spacing=SPACING).parent
    for path in sorted((tmp_path / "a").iterdir()):
        assert path.read_bytes() == (again / path.name).read_bytes(), path.name


@pytest.mark.parametrize(
    ("kwargs", "problem"), [({"n": 0}, "number of loops"), ({"shape": (193, 192)}, "even sizes")]
)
def test_bad_requests_are_input_errors(tmp_path: Path, kwargs, problem):
    arguments = {"n": 1, "seed": 0, "n_frames": 2, "shape": SHAPE, "spacing": SPACING, **kwargs}
    with pytest.raises(InputError, match=problem):
        write_dataset(tmp_path, **arguments)


def test_synth_offers_the_task():
    assert "architecture2d-sequence" in PHANTOM_MODULES
    args = build_parser().parse_args(["synth", "--task", "architecture2d-sequence", "--out", "o", "--n", "1"])
    assert args.task == "architecture2d-sequence"
