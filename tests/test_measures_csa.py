"""Cross-sectional measures against exact answers: area, perimeter, echo intensity per structure."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sonomuscle.errors import InputError
from sonomuscle.measures.csa import grey_range, perimeter, structure_measures


def _ellipse(shape: tuple[int, int], centre: tuple[float, float], axes: tuple[float, float]) -> np.ndarray:
    x, y = np.mgrid[: shape[0], : shape[1]]
    return ((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2 <= 1


def _ellipse_perimeter(a: float, b: float) -> float:
    """Ramanujan's second approximation (relative error < 1e-9 for these shapes)."""
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


@pytest.mark.parametrize(
    ("axes", "spacing"), [((20, 20), (0.2, 0.2)), ((60, 25), (0.1, 0.1)), ((40, 30), (0.1, 0.3))]
)
def test_perimeter_of_an_ellipse_within_one_percent(axes, spacing):
    mask = _ellipse((160, 160), (80, 80), axes)
    exact = _ellipse_perimeter(axes[0] * spacing[0], axes[1] * spacing[1])
    assert perimeter(mask, spacing) == pytest.approx(exact, rel=0.01)
    assert perimeter(np.zeros((8, 8), bool), spacing) == 0.0


def test_structure_rows_give_area_perimeter_and_echo_of_each_class():
    grey = np.full((120, 100), 40.0)
    label_map = np.zeros((120, 100), np.uint8)
    label_map[_ellipse((120, 100), (35, 50), (25, 20))] = 1
    label_map[_ellipse((120, 100), (90, 50), (15, 30))] = 3
    grey[label_map == 1] = np.tile([100.0, 110.0], (label_map == 1).sum() // 2 + 1)[: (label_map == 1).sum()]
    grey[label_map == 3] = 60.0
    rows = structure_measures(grey, label_map, {"rf": 1, "vl": 2, "vm": 3}, (0.25, 0.25))
    by_name = {row["structure"]: row for row in rows}
    assert by_name["rf"]["area"] == pytest.approx((label_map == 1).sum() * 0.0625)
    assert by_name["rf"]["area_cm2"] == pytest.approx(by_name["rf"]["area"] / 100)
    assert by_name["rf"]["echo_intensity"] == pytest.approx(105.0, abs=0.1)
    assert by_name["rf"]["echo_intensity_sd"] == pytest.approx(5.0, abs=0.01)
    assert by_name["vm"]["echo_intensity"] == 60.0 and by_name["vm"]["echo_intensity_sd"] == 0.0
    assert by_name["vm"]["perimeter"] == pytest.approx(_ellipse_perimeter(3.75, 7.5), rel=0.01)
    # absent: no area, no outline, no echo intensity to speak of
    assert (
        by_name["vl"]["area"] == 0
        and by_name["vl"]["perimeter"] == 0
        and math.isnan(by_name["vl"]["echo_intensity"])
    )


def test_without_spacing_sizes_are_pixels_and_no_square_centimetres():
    label_map = _ellipse((50, 50), (25, 25), (10, 10)).astype(np.uint8)
    (row,) = structure_measures(np.zeros((50, 50)), label_map, {"rf": 1}, None)
    assert row["area"] == label_map.sum() and math.isnan(row["area_cm2"])


def test_grey_range_and_shape_mismatch():
    assert grey_range(np.array([0.0, 17.0, 255.0])) == "0-255"
    assert grey_range(np.array([0.0, 1023.0])) == "0-1023"
    with pytest.raises(InputError, match="differ"):
        structure_measures(np.zeros((4, 4)), np.zeros((4, 5)), {"rf": 1}, None)
