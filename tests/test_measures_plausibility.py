"""Flags on measurement rows: each reason fires on its own case and stays quiet on a sound result."""

from __future__ import annotations

import pytest

from sonomuscle.measures.plausibility import quality_flags

SOUND = {
    "thickness": "20.5",
    "pennation_angle": "17.0",
    "fascicle_length": "70.0",
    "n_fascicles": "12",
    "units": "mm",
    "error": "",
}


def test_a_sound_result_has_no_flag():
    assert quality_flags(SOUND) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"thickness": ""}, "aponeuroses not found"),
        ({"n_fascicles": "2"}, "2 fascicle(s) found, fewer than 3"),
        ({"pennation_angle": "2.5"}, "pennation angle 2.5° outside 4–45°"),
        ({"pennation_angle": "52"}, "pennation angle 52.0° outside 4–45°"),
        ({"thickness": "95"}, "thickness 95.0 mm outside 3–80 mm"),
        ({"fascicle_length": "438"}, "fascicle length 438.0 mm outside 15–250 mm"),
    ],
)
def test_each_reason(change, expected):
    assert quality_flags(SOUND | change) == [expected]


def test_pixels_are_not_judged_as_anatomy_and_errors_are_not_repeated():
    assert quality_flags(SOUND | {"units": "px", "thickness": "300", "fascicle_length": "900"}) == []
    assert quality_flags(SOUND | {"units": "px", "pennation_angle": "60"}) == [
        "pennation angle 60.0° outside 4–45°"
    ]
    assert quality_flags(SOUND | {"thickness": "", "error": "masks not measurable"}) == []
    assert (
        quality_flags(SOUND | {"pennation_angle": "", "n_fascicles": ""}) == []
    )  # fascicle channel untrained
