"""Grey levels and YUV frames computed in numpy agree with FFmpeg's own conversions (swscale, called here in
the test process, where it is safe)."""

from __future__ import annotations

import av
import numpy as np
import pytest

from sonomuscle.data.yuv import grey_of, yuv420p_frame


@pytest.fixture
def rgb() -> np.ndarray:
    """Flat colour blocks of 4×4 pixels, as an overlay's drawn lines and fills are, over a grey ramp."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    return np.kron(blocks, np.ones((4, 4, 1), dtype=np.uint8))


@pytest.mark.parametrize("order", ["rgb24", "bgr24", "rgba"])
def test_grey_of_rgb_frames_is_ffmpegs_gray(rgb, order):
    pixels = {"rgb24": rgb, "bgr24": rgb[..., ::-1], "rgba": np.dstack([rgb, np.full(rgb.shape[:2], 7)])}
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels[order], dtype=np.uint8), format=order)
    reference = av.VideoFrame.from_ndarray(rgb, format="rgb24").to_ndarray(format="gray")
    assert grey_of(frame).shape == rgb.shape[:2]
    assert np.abs(grey_of(frame) - reference).max() <= 1


@pytest.mark.parametrize("full_range", [False, True])
def test_grey_of_yuv_frames_is_ffmpegs_gray_in_either_range(rgb, full_range):
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format="yuvj420p" if full_range else "yuv420p"
    )
    grey = grey_of(frame)
    assert np.abs(grey - frame.to_ndarray(format="gray")).max() <= 1
    assert grey.min() >= 0 and grey.max() <= 255
    if not full_range:  # luma 16–235 stretched to 0–255
        assert grey.max() - grey.min() > np.ptp(frame.to_ndarray()[: rgb.shape[0]])


def test_yuv420p_frame_has_ffmpegs_luma_and_gives_the_colours_back(rgb):
    frame = yuv420p_frame(rgb)
    reference = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    rows = rgb.shape[0]
    assert np.abs(frame.to_ndarray()[:rows].astype(int) - reference.to_ndarray()[:rows]).max() <= 1
    assert np.abs(frame.to_ndarray(format="rgb24").astype(int) - rgb).max() <= 4


def test_yuv420p_frame_needs_an_even_size():
    with pytest.raises(ValueError, match="even size"):
        yuv420p_frame(np.zeros((5, 8, 3), dtype=np.uint8))
