"""Smoothing a measure over a cine loop: no lag on a contraction, jumps found and left out, gaps filled."""

from __future__ import annotations

import numpy as np
import pytest

from sonomuscle.measures.temporal import smooth_series

FPS = 25


def _contraction(n: int = 75) -> tuple[np.ndarray, np.ndarray]:
    """Times and a pennation angle rising 15° → 25° and back with raised-cosine ramps."""
    t = np.arange(n) / FPS
    up = np.clip((t - 0.5) / 0.6, 0, 1)
    down = np.clip((t - 2.0) / 0.6, 0, 1)
    return t, 15 + 10 * (np.cos(np.pi * down) - np.cos(np.pi * up)) / 2


def test_noise_is_smoothed_without_delaying_the_rise():
    t, truth = _contraction()
    noisy = truth + np.random.default_rng(0).normal(0, 0.8, len(t))
    smoothed, jumps = smooth_series(t, noisy)
    assert not jumps.any()
    assert np.sqrt(np.mean((smoothed - truth) ** 2)) < 0.75 * np.sqrt(np.mean((noisy - truth) ** 2))
    # the time the angle crosses halfway up is the truth's, to a frame
    half = 20.0
    assert abs(np.argmax(smoothed > half) - np.argmax(truth > half)) <= 1
    causal = np.convolve(noisy, np.ones(7) / 7)[: len(t)]  # a running mean over the past 7 frames lags
    assert np.argmax(causal > half) - np.argmax(truth > half) >= 2


def test_a_segmentation_failure_is_a_jump_and_does_not_pull_the_curve():
    t, truth = _contraction()
    measured = truth.copy()
    measured[40] = 45.0  # one frame's fascicles mistaken
    smoothed, jumps = smooth_series(t, measured)
    assert np.flatnonzero(jumps).tolist() == [40]
    assert smoothed[38:43] == pytest.approx(truth[38:43], abs=0.3)


def test_frames_without_a_value_are_filled_and_short_loops_kept_as_they_are():
    t, truth = _contraction()
    measured = truth.copy()
    measured[[10, 11, 50]] = np.nan
    smoothed, jumps = smooth_series(t, measured)
    assert np.isfinite(smoothed).all() and not jumps.any()
    assert smoothed[[10, 11, 50]] == pytest.approx(truth[[10, 11, 50]], abs=0.3)
    short = np.array([20.0, np.nan, 21.0])
    kept, _ = smooth_series(np.arange(3) / FPS, short)
    np.testing.assert_array_equal(kept, short)
