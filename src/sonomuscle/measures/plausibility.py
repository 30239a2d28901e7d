"""Which muscle-architecture results to distrust: parts not found, too little evidence, values no muscle has.

The ranges are wide on purpose: a flag asks a person to look at the overlay, it does not judge the image.
B-mode studies of adult limb muscles report pennation angles of about 5–40° (more in hypertrophied
muscle), thickness from a few mm to about 60 mm and fascicle lengths of about 20–200 mm. Thickness and
length are only checked in mm; in pixels they say nothing about anatomy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

PLAUSIBLE_ANGLE_DEG = (4.0, 45.0)
# mean sigmoid output inside the predicted aponeuroses (sonomuscle.transforms.confidence, on the network's
# grid) below which the network guessed rather than saw them. On the 87 held-out DL_Track test images of the
# shipped model the confidence follows the aponeurosis Dice (Spearman 0.58); the 3 images below 0.89 scored
# Dice 0.39–0.66 (the others 0.83 on average). Measured on the upsampled masks, as before 0.8, the
# confidence ran 0.015 lower and the same 3 images fell below 0.88.
MIN_APONEUROSIS_CONFIDENCE = 0.89
PLAUSIBLE_MM = {"thickness": (3.0, 80.0), "fascicle_length": (15.0, 250.0)}
MIN_FASCICLES = 3


def quality_flags(row: Mapping[str, object]) -> list[str]:
    """Reasons to distrust one measurements row (its ``error``, when set, already says why it is empty)."""
    if row.get("error"):
        return []
    value = {
        k: _number(row.get(k)) for k in ("thickness", "pennation_angle", "fascicle_length", "n_fascicles")
    }
    if math.isnan(value["thickness"]):
        return ["aponeuroses not found"]
    flags = []
    confidence = _number(row.get("confidence_aponeurosis"))
    if _outside(confidence, MIN_APONEUROSIS_CONFIDENCE, 1.0):
        flags.append(f"low model confidence in the aponeuroses ({confidence:.2f})")
    if not math.isnan(value["n_fascicles"]) and value["n_fascicles"] < MIN_FASCICLES:
        flags.append(f"{value['n_fascicles']:.0f} fascicle(s) found, fewer than {MIN_FASCICLES}")
    low, high = PLAUSIBLE_ANGLE_DEG
    if _outside(value["pennation_angle"], low, high):
        flags.append(f"pennation angle {value['pennation_angle']:.1f}° outside {low:g}–{high:g}°")
    if row.get("units") == "mm":
        for measure, (low, high) in PLAUSIBLE_MM.items():
            if _outside(value[measure], low, high):
                flags.append(
                    f"{measure.replace('_', ' ')} {value[measure]:.1f} mm outside {low:g}–{high:g} mm"
                )
    return flags


def _outside(value: float, low: float, high: float) -> bool:
    """Measured (not NaN) and outside ``[low, high]``."""
    return not math.isnan(value) and not low <= value <= high


def _number(text: object) -> float:
    """A CSV cell as a float; empty or unparsable is NaN."""
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
