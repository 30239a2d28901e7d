"""Which muscle-architecture results to distrust: parts not found, too little evidence, values no muscle has,
and results the model was less sure of than of nearly all its own validation images.

Two kinds of threshold. Anatomy and geometry hold for every model: B-mode studies of adult limb muscles
report pennation angles of about 5–40° at rest and up to about 60° in strongly contracted or hypertrophied
muscle, thickness from a few mm to about 60 mm and fascicle lengths of about 20–250 mm (checked in mm only;
in pixels they say nothing about anatomy), and the fascicles of one picture run nearly parallel. The
ranges are wide on purpose: a flag asks a person to look at the overlay, it does not judge the image.

How sure a network is depends on the network: the confidence thresholds (:class:`QCThresholds`) are stored
with the model, in its bundle's ``configs/metadata.json`` under ``"qc"``, and recalibrated whenever it is
retrained (:func:`calibrated_thresholds`: a low quantile of the confidences on the model's own validation
images, so a flag means "less sure than of 95 % of the pictures it was validated on").
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sonomuscle.measures.architecture import EXTRAPOLATED, PAIR_UNCERTAIN

PLAUSIBLE_ANGLE_DEG = (4.0, 65.0)
PLAUSIBLE_MM = {"thickness": (3.0, 80.0), "fascicle_length": (15.0, 250.0)}
MIN_FASCICLES = 3
# interquartile range of the fascicles' angles (weighted like the median) above which they are not the
# parallel fascicles of one muscle: a wrong aponeurosis, another muscle's fascicles, or streaks of speckle
MAX_ANGLE_SPREAD_DEG = 8.0
CALIBRATION_QUANTILE = 0.05
CONFIDENCE_COLUMNS = ("confidence_aponeurosis", "confidence_fascicle")
FLAGGED_QC = (PAIR_UNCERTAIN, EXTRAPOLATED)  # what the measures noted that makes a number doubtful


@dataclass(frozen=True)
class QCThresholds:
    """The model-specific thresholds: the lowest mean probability inside each predicted structure that the
    model gave to nearly all its validation images (NaN: not calibrated, no check)."""

    min_confidence_aponeurosis: float = math.nan
    min_confidence_fascicle: float = math.nan

    @classmethod
    def of_bundle(cls, bundle: str | os.PathLike) -> QCThresholds:
        """The thresholds stored in ``bundle/configs/metadata.json`` (``"qc"``); none for a bundle without."""
        metadata = json.loads((Path(bundle) / "configs" / "metadata.json").read_text())
        stored = metadata.get("qc", {})
        return cls(**{k: float(v) for k, v in stored.items() if k in cls.__dataclass_fields__})

    def as_metadata(self, source: str) -> dict:
        """The ``"qc"`` entry of a bundle's metadata, saying what it was calibrated on."""
        return {**{k: round(v, 3) for k, v in asdict(self).items()}, "calibrated_on": source}


def calibrated_thresholds(rows: Mapping[str, object] | object) -> QCThresholds:
    """Thresholds from a table of the model's results on its validation images (columns
    ``confidence_aponeurosis``, ``confidence_fascicle``): the ``CALIBRATION_QUANTILE`` of each."""
    values = {}
    for column in CONFIDENCE_COLUMNS:
        confidences = np.asarray(rows[column], dtype=float)  # type: ignore[index]
        confidences = confidences[np.isfinite(confidences)]
        values[f"min_{column}"] = (
            float(np.quantile(confidences, CALIBRATION_QUANTILE)) if len(confidences) else math.nan
        )
    return QCThresholds(**values)


def quality_flags(row: Mapping[str, object], thresholds: QCThresholds = QCThresholds()) -> list[str]:
    """Reasons to distrust one measurements row (its ``error``, when set, already says why it is empty)."""
    if row.get("error"):
        return []
    value = {
        k: _number(row.get(k))
        for k in ("thickness", "pennation_angle", "fascicle_length", "n_fascicles", "pennation_angle_spread")
    }
    if math.isnan(value["thickness"]):
        why = [part for part in str(row.get("qc") or "").split("; ") if "aponeuros" in part]
        return ["aponeuroses not found" + (f" ({why[0]})" if why else "")]
    flags = [part for part in str(row.get("qc") or "").split("; ") if part.startswith(FLAGGED_QC)]
    for structure in ("aponeurosis", "fascicle"):
        confidence = _number(row.get(f"confidence_{structure}"))
        minimum = getattr(thresholds, f"min_confidence_{structure}")
        if not math.isnan(minimum) and _outside(confidence, minimum, 1.0):
            flags.append(f"low model confidence in the {structure} ({confidence:.2f} < {minimum:.2f})")
    if not math.isnan(value["n_fascicles"]) and value["n_fascicles"] < MIN_FASCICLES:
        flags.append(f"{value['n_fascicles']:.0f} fascicle(s) found, fewer than {MIN_FASCICLES}")
    elif _outside(value["pennation_angle_spread"], 0.0, MAX_ANGLE_SPREAD_DEG):
        flags.append(
            f"fascicle angles spread over {value['pennation_angle_spread']:.1f}° (interquartile), more than "
            f"{MAX_ANGLE_SPREAD_DEG:g}°"
        )
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
