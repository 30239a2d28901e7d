"""Longitudinal B-mode images of a muscle at a known joint angle and activation: the state-regression phantom.

An image-level regression bundle learns a subject's state from the image alone, as in Cunningham & Loram's
estimates of joint angle and muscle activation from ultrasound: the muscle's architecture follows the state,
with modest differences between subjects. Each case draws a hidden ``angle`` (joint angle, 0–90°) and
``activation`` (0–1); the image is an ``architecture2d`` rendering (aponeuroses, fascicle striations, speckle
through ``physics.simulate_bmode``, at the resolution of ``classify2d``) in which

- activation turns and bends the fascicles: pennation +18° and curvature 0.035/mm (35 m⁻¹, their direction
  turning by about ±48° from the image's centre to its sides) at full activation; it thickens the muscle
  (+10 %) and darkens it (echogenicity of the muscle and of its striations −50 %);
- joint angle lengthens the fascicles: pennation −8° and thickness −10 % at 90°; and it tilts the deep
  aponeurosis from −5° to +10°, the superficial one three quarters as far (a cue of its own);
- a subject brings its own pennation at rest (±1°), thickness (±10 %), muscle echo (±10 %), fat, striation,
  display gain, depth attenuation left after time-gain compensation, aponeurosis tilts (±0.5°) and probe
  orientation; each image adds ±0.3° to the pennation and to each tilt, and ±1 dB to the gain.

The effects are set so that a small CNN trained on other subjects estimates both states to within a third of
their spread (measured with the bundle; its model card has the figures): with the first settings (curvature
0.012/mm, echo −40 %, pennation at rest ±2°) activation stayed at about 0.9 of its spread on held-out subjects
while the network fitted its training subjects to 0.1.

Every cue but the curvature varies between subjects, so a model must combine them: the curvature alone is
subject-free, the tilt nearly so.

Subjects follow ``classify2d.subject_of`` with 10 cases each (the first three 5), each over the whole ranges.
Written: ``images/case_XXX.png``, ``labels.csv`` (image, subject, angle, activation), ``truth.csv`` (every
drawn parameter, exact) and ``datalist.json`` from ``sonomuscle.data.table.build_table_datalist`` (split by
subject, the targets in ``TARGETS`` order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sonomuscle.data.phantoms.architecture2d import Appearance, Draws, Geometry, render
from sonomuscle.data.phantoms.classify2d import (
    SHAPE,
    SPACING_MM,
    Case,
    layered_geometry,
    muscle_region,
    subject_of,
    write_image_level,
)

TARGETS = ("angle", "activation")
ANGLE_RANGE_DEG = (0.0, 90.0)
CASES_PER_SUBJECT = 10
ACTIVATION_PENNATION_DEG = 18.0  # pennation change at full activation
ACTIVATION_THICKENING = 0.1  # relative
ACTIVATION_CURVATURE = 0.035  # 1/mm, of the fascicles
ACTIVATION_ECHO = -0.5  # relative change of the muscle's echogenicity
ANGLE_PENNATION_DEG = -8.0  # pennation change over the angle range
ANGLE_THICKENING = -0.1
DEEP_TILT_DEG = (-5.0, 10.0)  # deep aponeurosis tilt at the ends of the angle range
SUPERFICIAL_FOLLOW = 0.75  # the superficial aponeurosis tilts this much as far: the muscle converges by 3°
JITTER_DEG = 0.3  # per image, on the pennation and on each aponeurosis' tilt
_SUBJECT_STREAM = 3  # seed stream beside drawn_cases' [seed, case]


@dataclass(frozen=True)
class Subject:
    """What one subject's images share: architecture at rest (activation 0, angle 0) and imaging."""

    name: str
    pennation_deg: float
    thickness_mm: float
    echo: float
    perimysium: float
    fat_mm: float
    dermis_mm: float
    deep_tilt_deg: float  # offsets to the tilts the angle gives
    superficial_tilt_deg: float
    gain_db: float
    attenuation_db_cm: float
    side: float  # ±1: the lateral direction in which the fascicles rise


def draw_subject(seed: int, index: int) -> Subject:
    rng = np.random.default_rng([seed, index, _SUBJECT_STREAM])
    return Subject(
        name=f"s{index:02d}",
        pennation_deg=float(rng.uniform(13.0, 15.0)),
        thickness_mm=float(18.0 * rng.uniform(0.9, 1.1)),
        echo=float(0.02 * rng.uniform(0.9, 1.1)),
        perimysium=float(rng.uniform(0.15, 0.17)),
        fat_mm=float(rng.uniform(2.0, 6.0)),
        dermis_mm=float(rng.uniform(0.8, 1.5)),
        deep_tilt_deg=float(rng.uniform(-0.5, 0.5)),
        superficial_tilt_deg=float(rng.uniform(-0.5, 0.5)),
        gain_db=float(rng.uniform(-4.0, -2.0)),
        attenuation_db_cm=float(rng.uniform(0.0, 1.0)),
        side=float(rng.choice([-1.0, 1.0])),
    )


def make_case(rng: np.random.Generator, subject: Subject, angle: float, activation: float) -> Case:
    """``subject``'s muscle at joint ``angle`` (degrees) and ``activation`` (0–1)."""
    flexion = (angle - ANGLE_RANGE_DEG[0]) / (ANGLE_RANGE_DEG[1] - ANGLE_RANGE_DEG[0])
    pennation = (
        subject.pennation_deg
        + ACTIVATION_PENNATION_DEG * activation
        + ANGLE_PENNATION_DEG * flexion
        + rng.uniform(-JITTER_DEG, JITTER_DEG)
    )
    thickness = (
        subject.thickness_mm * (1 + ACTIVATION_THICKENING * activation) * (1 + ANGLE_THICKENING * flexion)
    )
    tilt = DEEP_TILT_DEG[0] + (DEEP_TILT_DEG[1] - DEEP_TILT_DEG[0]) * flexion
    deep_tilt = subject.deep_tilt_deg + tilt + rng.uniform(-JITTER_DEG, JITTER_DEG)
    superficial_tilt = (
        subject.superficial_tilt_deg + SUPERFICIAL_FOLLOW * tilt + rng.uniform(-JITTER_DEG, JITTER_DEG)
    )
    bands = (float(rng.uniform(0.6, 1.5)), float(rng.uniform(0.6, 1.5)))
    echo = subject.echo * (1 + ACTIVATION_ECHO * activation)
    g = layered_geometry(
        dermis=subject.dermis_mm,
        fat_mm=subject.fat_mm,
        bands=bands,
        tilts_deg=(superficial_tilt, deep_tilt),
        thickness_mm=thickness,
        pennation_deg=pennation,
        side=subject.side,
    )
    appearance = Appearance(
        muscle=echo,
        perimysium=subject.perimysium * (1 + ACTIVATION_ECHO * activation),
        fascicle_curvature=ACTIVATION_CURVATURE * activation,
        gain_db=(subject.gain_db - 1.0, subject.gain_db + 1.0),
        residual_attenuation_db_cm=subject.attenuation_db_cm,
    )
    phantom = render(g, Draws.shared(rng), SHAPE, SPACING_MM, appearance)
    truth = {
        "subject": subject.name,
        "angle": angle,
        "activation": activation,
        "spacing_mm": SPACING_MM,
        "pennation_angle_deg": pennation,
        "thickness_mm": thickness,
        "fascicle_length_mm": fascicle_length(g),
        "fascicle_curvature_per_mm": appearance.fascicle_curvature,
        "deep_tilt_deg": deep_tilt,
        "superficial_tilt_deg": superficial_tilt,
        "superficial_band_mm": bands[0],
        "deep_band_mm": bands[1],
        "muscle_echogenicity": echo,
        "perimysium_echogenicity": appearance.perimysium,
        "fat_mm": subject.fat_mm,
        "dermis_mm": subject.dermis_mm,
        "fascicle_side": subject.side,
        "subject_pennation_deg": subject.pennation_deg,
        "subject_thickness_mm": subject.thickness_mm,
        "subject_gain_db": subject.gain_db,
        "residual_attenuation_db_cm": subject.attenuation_db_cm,
    }
    return Case(phantom.image, muscle_region(g), phantom.fascicle, g, truth)


def fascicle_length(g: Geometry) -> float:
    """Length (mm) of the fascicle that leaves ``L_d`` at the image's centre, up to ``L_s``, taken straight
    (as the pennation angle is: the curvature aside)."""
    xc = (SHAPE[0] - 1) / 2 * SPACING_MM
    direction = np.array([math.cos(g.psi), math.sin(g.psi)])
    return abs(g.superficial.hit(np.array([xc, g.deep.y(xc)]), direction))


def write_dataset(out: Path, n: int, seed: int) -> Path:
    """Write ``n`` cases: images/, ``labels.csv``, ``truth.csv`` and ``datalist.json`` (returned)."""

    def make(case: int, rng: np.random.Generator) -> Case:
        subject = draw_subject(seed, subject_of(case, CASES_PER_SUBJECT))
        angle = float(rng.uniform(*ANGLE_RANGE_DEG))
        return make_case(rng, subject, angle, float(rng.uniform(0.0, 1.0)))

    return write_image_level(out, n, seed, make, "regress2d phantoms", CASES_PER_SUBJECT, targets=TARGETS)
