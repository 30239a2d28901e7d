"""Properties every measure must have, on many random geometries (hypothesis): moving the muscle in the
picture or mirroring it laterally changes nothing, and the spacing scales lengths and areas exactly."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.draw import line

from sonomuscle.measures.architecture import measure_architecture
from sonomuscle.measures.area import area
from sonomuscle.measures.thickness import thickness_summary

SHAPE = (400, 160)  # (X lateral, Y depth) pixels
# no wall-clock deadline: a busy machine must not fail a test
EXAMPLES = settings(max_examples=12, deadline=None, derandomize=True)


@st.composite
def muscles(draw) -> tuple[np.ndarray, np.ndarray]:
    """Two horizontal aponeurosis bands and three parallel fascicles between them, fully inside the picture."""
    top = draw(st.integers(20, 40))
    thickness = draw(st.integers(50, 70))
    angle = math.radians(draw(st.floats(15.0, 30.0)))
    side = draw(st.sampled_from([1, -1]))
    apo = np.zeros(SHAPE, np.uint8)
    apo[:, top - 4 : top] = 1
    apo[:, top + thickness : top + thickness + 4] = 1
    fas = np.zeros(SHAPE, np.uint8)
    run = thickness / math.tan(angle)
    for centre in (140, 200, 260):
        x0, x1 = centre - side * run * 0.3, centre + side * run * 0.3
        y0, y1 = top + thickness * 0.2, top + thickness * 0.8
        rr, cc = line(round(x0), round(y1), round(x1), round(y0))
        fas[rr, cc] = 1
    return apo, fas


def _measures(apo: np.ndarray, fas: np.ndarray, spacing=(1.0, 1.0)) -> np.ndarray:
    result = measure_architecture(apo, fas, spacing)
    return np.array([result.thickness, result.pennation_angle, result.fascicle_length])


@EXAMPLES
@given(muscles(), st.integers(-15, 15))
def test_moving_the_muscle_in_depth_changes_no_measure(muscle, shift):
    apo, fas = muscle
    moved = [np.roll(mask, shift, axis=1) for mask in (apo, fas)]  # bands stay inside: nothing wraps
    np.testing.assert_allclose(_measures(*moved), _measures(apo, fas), rtol=1e-6, atol=1e-6)


@EXAMPLES
@given(muscles())
def test_a_lateral_mirror_changes_the_direction_only(muscle):
    apo, fas = muscle
    original = measure_architecture(apo, fas, (1.0, 1.0))
    mirrored = measure_architecture(apo[::-1], fas[::-1], (1.0, 1.0))
    np.testing.assert_allclose(
        [mirrored.thickness, mirrored.pennation_angle, mirrored.fascicle_length],
        [original.thickness, original.pennation_angle, original.fascicle_length],
        rtol=1e-6,
        atol=1e-6,
    )
    assert {original.fascicle_direction, mirrored.fascicle_direction} == {"down-left", "down-right"}


@EXAMPLES
@given(muscles(), st.floats(0.05, 0.5))
def test_square_pixels_scale_lengths_not_angles(muscle, mm):
    apo, fas = muscle
    in_px, in_mm = _measures(apo, fas), _measures(apo, fas, (mm, mm))
    np.testing.assert_allclose(in_mm, in_px * [mm, 1.0, mm], rtol=1e-6)


@EXAMPLES
@given(st.integers(5, 40), st.integers(5, 40), st.floats(0.05, 2.0), st.floats(0.05, 2.0), st.integers(0, 20))
def test_area_is_pixels_times_pixel_area_wherever_the_mask_is(width, height, sx, sy, offset):
    mask = np.zeros((80, 80), np.uint8)
    mask[offset : offset + width, offset : offset + height] = 1
    assert math.isclose(area(mask, (sx, sy)), width * height * sx * sy, rel_tol=1e-9)


@EXAMPLES
@given(st.integers(4, 12), st.integers(0, 30), st.floats(0.1, 1.0))
def test_layer_thickness_moves_with_the_layer_and_scales_with_spacing(width, offset, mm):
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 10 + offset : 10 + offset + width] = 1
    reference = thickness_summary(mask, (1.0, 1.0))["median"]
    moved = thickness_summary(np.roll(mask, 3, axis=1), (1.0, 1.0))["median"]
    assert math.isclose(moved, reference, rel_tol=1e-9)
    assert math.isclose(thickness_summary(mask, (mm, mm))["median"], reference * mm, rel_tol=1e-6)
