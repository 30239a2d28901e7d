"""Flags on measurement rows: each reason fires on its own case and stays quiet on a sound result."""

from __future__ import annotations

import json
import math

import pytest

from sonomuscle.measures.plausibility import QCThresholds, calibrated_thresholds, quality_flags

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
        ({"pennation_angle": "2.5"}, "pennation angle 2.5° outside 4–65°"),
        ({"pennation_angle": "68"}, "pennation angle 68.0° outside 4–65°"),
        (
            {"pennation_angle_spread": "12.5"},
            "fascicle angles spread over 12.5° (interquartile), more than 8°",
        ),
        (
            {
                "qc": "2 fascicle piece(s) dropped; aponeurosis pair uncertain: another layer holds 80% as many"
            },
            "aponeurosis pair uncertain: another layer holds 80% as many",
        ),
        (
            {"qc": "thickness extrapolated at column 48: the deep aponeurosis was found 192 px away"},
            "thickness extrapolated at column 48: the deep aponeurosis was found 192 px away",
        ),
        ({"thickness": "95"}, "thickness 95.0 mm outside 3–80 mm"),
        ({"fascicle_length": "438"}, "fascicle length 438.0 mm outside 15–250 mm"),
    ],
)
def test_each_reason(change, expected):
    assert quality_flags(SOUND | change) == [expected]


def test_pixels_are_not_judged_as_anatomy_and_errors_are_not_repeated():
    assert quality_flags(SOUND | {"units": "px", "thickness": "300", "fascicle_length": "900"}) == []
    assert quality_flags(SOUND | {"units": "px", "pennation_angle": "70"}) == [
        "pennation angle 70.0° outside 4–65°"
    ]
    assert quality_flags(SOUND | {"thickness": "", "error": "masks not measurable"}) == []
    assert (
        quality_flags(SOUND | {"pennation_angle": "", "n_fascicles": ""}) == []
    )  # fascicle channel untrained


def test_steep_contracted_muscle_is_not_flagged_for_its_angle():
    assert quality_flags(SOUND | {"pennation_angle": "55"}) == []


def test_missing_aponeuroses_say_why():
    row = SOUND | {"thickness": "", "qc": "expected two aponeuroses, found 1 band(s) ... and 2 fragment(s)"}
    assert quality_flags(row) == [
        "aponeuroses not found (expected two aponeuroses, found 1 band(s) ... and 2 fragment(s))"
    ]


def test_confidence_thresholds_come_from_the_model():
    """Uncalibrated: no confidence check; calibrated: below the validation images' 5th percentile is flagged."""
    row = SOUND | {"confidence_aponeurosis": "0.80", "confidence_fascicle": "0.90"}
    assert quality_flags(row) == []
    validation = {
        "confidence_aponeurosis": [0.80 + 0.002 * i for i in range(100)],
        "confidence_fascicle": [math.nan] * 100,
    }
    thresholds = calibrated_thresholds(validation)
    assert thresholds.min_confidence_aponeurosis == pytest.approx(0.80 + 0.002 * 4.95, abs=0.002)
    assert math.isnan(thresholds.min_confidence_fascicle)  # nothing to calibrate on: no check
    assert quality_flags(row, thresholds) == ["low model confidence in the aponeurosis (0.80 < 0.81)"]


def test_thresholds_are_read_from_the_bundle(tmp_path):
    (tmp_path / "configs").mkdir()
    stored = QCThresholds(0.87, 0.7).as_metadata("12 validation images")
    (tmp_path / "configs" / "metadata.json").write_text(json.dumps({"version": "1", "qc": stored}))
    assert QCThresholds.of_bundle(tmp_path) == QCThresholds(0.87, 0.7)
    (tmp_path / "configs" / "metadata.json").write_text(json.dumps({"version": "1"}))
    assert math.isnan(QCThresholds.of_bundle(tmp_path).min_confidence_aponeurosis)
