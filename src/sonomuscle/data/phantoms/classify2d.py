"""Longitudinal B-mode images of four muscles and of myopathic muscle: the image-classification phantom.

An image-level bundle learns a class from a whole image, with nothing outlined; what it must tell apart is
how a muscle is built, not where. Each image is an ``architecture2d`` rendering (aponeuroses, fascicle
striations, speckle through ``physics.simulate_bmode``) of one of:

- ``gastrocnemius_medialis``: thin (12–20 mm), steep pennation (16–28°), dense (0.5–1.3 mm apart), long
  and bright striations, aponeuroses converging by up to 4°;
- ``vastus_lateralis``: thick (18–27 mm), 10–19°, sparser and shorter striations, a brighter muscle, more fat;
- ``tibialis_anterior``: 15–22 mm, bipennate: a central aponeurosis with fascicles at 7–13° on either side
  (a herringbone), little fat;
- ``biceps_brachii``: thick (19–28 mm), fascicles near-parallel to the aponeuroses (0–7°), faint striations;
- ``myopathic``: any of those four with the striations nearly gone (0–10 % of their echo), a more homogeneous
  texture and the muscle 1.8–2.7× as echogenic as the healthy one with its striations spread over it: its
  mean grey rises by about 60 % (median; 25–100 % with the subject's gain), as in neuromuscular disease.
  The class is in the muscle only: fat, aponeuroses and the deeper muscle look as in the other classes.

The ranges overlap, so no single quantity names the class. Myopathic images are rare on purpose: of every ten
consecutive cases one is myopathic and the nine others hold each muscle at least twice (a shuffled deck per
ten), so class weighting matters and every class is present from ten cases on.

Subjects (``subject_of``): the first three hold 4 cases each, later ones 8, so that nine cases already come
from the three subjects that a training/validation/test split by subject needs. A subject brings its own
display gain, depth attenuation left by the time-gain compensation, subcutaneous fat, muscle echo (±10 %)
and probe orientation; its images show several classes.

Written: ``images/case_XXX.png`` (192 × 192, 0.25 mm pixels), ``labels.csv`` (image, subject, muscle: the table
a user would have), ``truth.csv`` (every drawn parameter, exact, and the mean grey of the muscle in the saved
image) and ``datalist.json`` from ``sonomuscle.data.table.build_table_datalist`` (split by subject).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sonomuscle.data.phantoms.architecture2d import (
    DEFAULT_APPEARANCE,
    Appearance,
    Draws,
    Geometry,
    Line,
    render,
)
from sonomuscle.data.phantoms.dataset import drawn_cases, write_png
from sonomuscle.data.table import build_table_datalist
from sonomuscle.errors import InputError
from sonomuscle.io import atomic_write_rows

CLASS_NAMES = (
    "gastrocnemius_medialis",
    "vastus_lateralis",
    "tibialis_anterior",
    "biceps_brachii",
    "myopathic",
)
MUSCLE_TYPES = CLASS_NAMES[:4]
MYOPATHIC = CLASS_NAMES[4]
SHAPE = (192, 192)  # (X, Y) pixels: a 48 mm field of view
SPACING_MM = 0.25
CASES_PER_SUBJECT = 8
SMALL_SUBJECTS = 3  # the first subjects hold half as many cases, so that few cases still give three subjects
DECK = 10  # of every DECK consecutive cases one is myopathic
SPLIT = {"val_fraction": 0.15, "test_fraction": 0.2}  # of the subjects; the test subjects are held out
MYOPATHIC_ECHO_RANGE = (1.8, 2.7)  # echogenicity factor over the healthy muscle with its striations spread
MYOPATHIC_STRIATION_RANGE = (0.0, 0.1)  # striation echogenicity factor
MYOPATHIC_VARIATION = 0.1  # slow brightness variation, against architecture2d's 0.25
# striations of peak echogenicity p, g mm apart, spread evenly over the muscle give about STRIATION_SHARE·p/g
# (tuned so that a myopathic muscle is +40–80 % brighter, median, whatever its type)
STRIATION_SHARE = 0.1
MIN_BELOW_MM = 6.0  # tissue kept below the deep aponeurosis
_SUBJECT_STREAM, _DECK_STREAM = 1, 2  # seed streams beside drawn_cases' [seed, case]


@dataclass(frozen=True)
class MuscleType:
    """Ranges (uniform) one muscle's images are drawn from: architecture, striation and echo."""

    thickness_mm: tuple[float, float]
    pennation_deg: tuple[float, float]
    convergence_deg: float  # the aponeuroses' slopes differ by up to this
    gap_mm: tuple[float, float]  # between neighbouring striations
    run_mm: tuple[float, float]  # length scale of a striation's intermittency
    perimysium: tuple[float, float]  # striation echogenicity
    echo: tuple[float, float]  # mean muscle echogenicity
    fat_factor: float  # subcutaneous fat relative to the subject's (thigh thicker, shin thinner)
    central_band_mm: tuple[float, float] = (0.0, 0.0)  # > 0: bipennate with a central aponeurosis


TYPES = {
    "gastrocnemius_medialis": MuscleType(
        (12.0, 20.0), (16.0, 28.0), 4.0, (0.5, 1.3), (3.0, 5.0), (0.15, 0.22), (0.016, 0.024), 0.8
    ),
    "vastus_lateralis": MuscleType(
        (18.0, 27.0), (10.0, 19.0), 2.0, (0.8, 2.2), (1.5, 3.0), (0.1, 0.17), (0.021, 0.03), 1.2
    ),
    "tibialis_anterior": MuscleType(
        (15.0, 22.0), (7.0, 13.0), 2.0, (0.7, 1.8), (2.0, 4.0), (0.1, 0.18), (0.018, 0.026), 0.6, (0.5, 1.0)
    ),
    "biceps_brachii": MuscleType(
        (19.0, 28.0), (0.0, 7.0), 3.0, (0.9, 2.5), (2.0, 5.0), (0.08, 0.15), (0.015, 0.024), 0.9
    ),
}


@dataclass(frozen=True)
class Subject:
    """What one subject's images share."""

    name: str
    gain_db: float  # centre of the display gain, drawn ±1.5 dB per image
    attenuation_db_cm: float  # depth attenuation the time-gain compensation leaves
    fat_mm: float
    echo_factor: float
    side: float  # ±1: the lateral direction in which the fascicles rise (probe orientation)


@dataclass
class Case:
    """One image (X, Y) in [0, 1], its muscle region (between the aponeuroses, central band excluded), the
    fascicle strokes ``architecture2d`` traces (on the fascicles above a central band), the geometry and every
    drawn parameter."""

    image: np.ndarray
    muscle: np.ndarray
    fascicle: np.ndarray
    geometry: Geometry
    truth: dict[str, float | str]


def subject_of(case: int, size: int = CASES_PER_SUBJECT) -> int:
    """Case ``case``'s subject: the first ``SMALL_SUBJECTS`` hold ``size // 2`` cases, the others ``size``."""
    small = size // 2
    head = SMALL_SUBJECTS * small
    return case // small if case < head else SMALL_SUBJECTS + (case - head) // size


def draw_subject(seed: int, index: int) -> Subject:
    rng = np.random.default_rng([seed, index, _SUBJECT_STREAM])
    return Subject(
        name=f"s{index:02d}",
        gain_db=float(rng.uniform(-4.5, -1.5)),
        attenuation_db_cm=float(rng.uniform(0.0, 1.5)),
        fat_mm=float(rng.uniform(2.0, 6.0)),
        echo_factor=float(rng.uniform(0.9, 1.1)),
        side=float(rng.choice([-1.0, 1.0])),
    )


def class_of(seed: int, case: int) -> str:
    """The class of case ``case``: its place in the shuffled deck of its run of ``DECK`` cases."""
    rng = np.random.default_rng([seed, case // DECK, _DECK_STREAM])
    deck = [*MUSCLE_TYPES, *MUSCLE_TYPES, MYOPATHIC, MUSCLE_TYPES[rng.integers(len(MUSCLE_TYPES))]]
    return str(rng.permutation(deck)[case % DECK])


def layered_geometry(
    *,
    dermis: float,
    fat_mm: float,
    bands: tuple[float, float],
    tilts_deg: tuple[float, float],
    thickness_mm: float,
    pennation_deg: float,
    side: float,
    central_band_mm: float = 0.0,
) -> Geometry:
    """Skin, fat, superficial aponeurosis (``bands`` thick: superficial, deep), muscle ``thickness_mm`` thick
    at the image's centre (normal to ``L_d``), deep aponeurosis; ``tilts_deg`` of ``L_s`` and ``L_d``,
    fascicles rising toward ``L_s`` in lateral direction ``side``. ``InputError`` if the layers overrun the
    image."""
    xc, depth = (SHAPE[0] - 1) / 2 * SPACING_MM, SHAPE[1] * SPACING_MM
    slope_s, slope_d = (math.tan(math.radians(t)) for t in tilts_deg)
    fat_bottom = dermis + fat_mm
    superficial = Line(fat_bottom + bands[0] - slope_s * xc, slope_s)
    r = math.hypot(1.0, slope_d)
    # P = (xc, y_p) on L_d; P + thickness·(slope_d, -1)/r lies on L_s
    y_p = superficial.y(xc + thickness_mm * slope_d / r) + thickness_mm / r
    deep = Line(y_p - slope_d * xc, slope_d)
    lowest = max(deep.y(0.0), deep.y(2 * xc)) + bands[1] + MIN_BELOW_MM
    if lowest > depth:
        raise InputError(None, f"the layers reach {lowest:.1f} mm, below the {depth:.0f} mm image")
    theta = math.radians(pennation_deg)
    psi = math.atan(slope_d) - side * theta
    return Geometry(dermis, fat_bottom, *bands, superficial, deep, theta, psi, central_band=central_band_mm)


def muscle_region(g: Geometry) -> np.ndarray:
    """Pixels between the aponeuroses, outside a central aponeurosis."""
    x, y = np.meshgrid(*(np.arange(n) * SPACING_MM for n in SHAPE), indexing="ij")
    inside = (y >= g.superficial.y(x)) & (y < g.deep.y(x))
    return inside & (np.abs(y - g.central().y(x)) >= g.central_band / 2)


def make_case(rng: np.random.Generator, subject: Subject, muscle_type: str, myopathic: bool) -> Case:
    """One image of ``muscle_type`` in ``subject``, myopathic or not. Every draw is made either way, in one
    order, so that the same ``rng`` state gives the same muscle healthy and myopathic."""
    kind = TYPES[muscle_type]
    thickness = rng.uniform(*kind.thickness_mm)
    pennation = rng.uniform(*kind.pennation_deg)
    tilt_d = rng.uniform(-3.0, 3.0)
    tilt_s = tilt_d + rng.uniform(-1.0, 1.0) * kind.convergence_deg
    fat = subject.fat_mm * kind.fat_factor * rng.uniform(0.85, 1.15)
    dermis = rng.uniform(0.8, 1.5)
    bands = tuple(rng.uniform(0.6, 1.5, size=2))
    central_band = rng.uniform(*kind.central_band_mm)
    echo = subject.echo_factor * rng.uniform(*kind.echo)
    perimysium = rng.uniform(*kind.perimysium)
    gap = rng.uniform(*kind.gap_mm, size=2)
    run = rng.uniform(*kind.run_mm)
    myopathic_echo = rng.uniform(*MYOPATHIC_ECHO_RANGE)
    myopathic_striation = rng.uniform(*MYOPATHIC_STRIATION_RANGE)
    if myopathic:
        smeared = echo + STRIATION_SHARE * perimysium / gap.mean()  # the striations spread over the muscle
        echo, perimysium = smeared * myopathic_echo, perimysium * myopathic_striation
    g = layered_geometry(
        dermis=dermis,
        fat_mm=fat,
        bands=bands,
        tilts_deg=(tilt_s, tilt_d),
        thickness_mm=thickness,
        pennation_deg=pennation,
        side=subject.side,
        central_band_mm=central_band,
    )
    appearance = Appearance(
        muscle=echo,
        variation=MYOPATHIC_VARIATION if myopathic else DEFAULT_APPEARANCE.variation,
        perimysium=perimysium,
        fascicle_gap_mm=(float(gap.min()), float(gap.max())),
        striation_run_mm=run,
        gain_db=(subject.gain_db - 1.5, subject.gain_db + 1.5),
        residual_attenuation_db_cm=subject.attenuation_db_cm,
    )
    phantom = render(g, Draws.shared(rng), SHAPE, SPACING_MM, appearance)
    truth = {
        "subject": subject.name,
        "muscle": MYOPATHIC if myopathic else muscle_type,
        "muscle_type": muscle_type,
        "myopathic": int(myopathic),
        "spacing_mm": SPACING_MM,
        "thickness_mm": thickness,
        "pennation_angle_deg": pennation,
        "superficial_tilt_deg": tilt_s,
        "deep_tilt_deg": tilt_d,
        "central_band_mm": central_band,
        "superficial_band_mm": bands[0],
        "deep_band_mm": bands[1],
        "dermis_mm": dermis,
        "fat_mm": fat,
        "muscle_echogenicity": echo,
        "perimysium_echogenicity": perimysium,
        "texture_variation": appearance.variation,
        "fascicle_gap_min_mm": appearance.fascicle_gap_mm[0],
        "fascicle_gap_max_mm": appearance.fascicle_gap_mm[1],
        "striation_run_mm": run,
        "fascicle_side": subject.side,
        "subject_gain_db": subject.gain_db,
        "residual_attenuation_db_cm": subject.attenuation_db_cm,
    }
    return Case(phantom.image, muscle_region(g), phantom.fascicle, g, truth)


def write_dataset(out: Path, n: int, seed: int) -> Path:
    """Write ``n`` cases: images/, ``labels.csv``, ``truth.csv`` and ``datalist.json`` (returned)."""

    def make(case: int, rng: np.random.Generator) -> Case:
        subject = draw_subject(seed, subject_of(case))
        kind = class_of(seed, case)
        muscle_type = MUSCLE_TYPES[rng.integers(len(MUSCLE_TYPES))] if kind == MYOPATHIC else kind
        return make_case(rng, subject, muscle_type, kind == MYOPATHIC)

    return write_image_level(
        out,
        n,
        seed,
        make,
        "classify2d phantoms",
        CASES_PER_SUBJECT,
        class_column="muscle",
        class_names=CLASS_NAMES,
    )


def write_image_level(
    out: Path,
    n: int,
    seed: int,
    make: Callable[[int, np.random.Generator], Case],
    desc: str,
    cases_per_subject: int,
    *,
    class_column: str | None = None,
    class_names: Sequence[str] | None = None,
    targets: Sequence[str] = (),
) -> Path:
    """Images, the user's table (``image``, ``subject``, then ``class_column`` or the ``targets``), the truth
    and the datalist (classification or regression, as ``build_table_datalist`` takes them).

    ``make(i, rng)`` renders case ``i`` from :func:`~sonomuscle.data.phantoms.dataset.drawn_cases`' generator;
    subjects follow :func:`subject_of`, and a split by subject needs three.
    """
    subjects = subject_of(n - 1, cases_per_subject) + 1
    if subjects < 3:
        fewest = 2 * (cases_per_subject // 2) + 1  # the third subject's first case
        raise InputError(
            None, f"{n} cases come from {subjects} subject(s); a split by subject needs 3 (n ≥ {fewest})"
        )
    out = Path(out)
    labels, truths = [], []
    columns = [class_column] if class_column else list(targets)
    for i, (name, rng) in enumerate(drawn_cases(n, seed, lambda rng: rng, desc)):
        case = make(i, rng)
        grey = np.round(case.image * 255).astype(np.uint8)
        write_png(out / "images" / f"{name}.png", grey)
        echo_intensity = float(grey[case.muscle].astype(np.float64).mean())
        truths.append({"case": name, **case.truth, "echo_intensity": echo_intensity})
        labels.append({"image": f"{name}.png", **{key: case.truth[key] for key in ("subject", *columns)}})
    atomic_write_rows(out / "labels.csv", labels)
    atomic_write_rows(out / "truth.csv", truths, significant=None)  # exact, as drawn
    datalist = out / "datalist.json"
    build_table_datalist(
        out / "images",
        out / "labels.csv",
        datalist,
        subject_column="subject",
        seed=seed,
        spacing=SPACING_MM,
        targets=targets,
        class_column=class_column,
        class_names=class_names,
        **SPLIT,
    )
    return datalist
