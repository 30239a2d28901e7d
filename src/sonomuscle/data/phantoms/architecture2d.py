"""Longitudinal B-mode phantoms of a pennate muscle with exact architecture, and their PNG dataset writer.

Geometry (shared with ``sonomuscle.measures.architecture``; arrays are ``(X, Y)``, pixel ``i`` centred at
``i·spacing`` mm): ``L_s`` is the deep edge of the superficial aponeurosis, ``L_d`` the superficial edge of
the deep one, straight lines ``y = a + b·x`` tilted by ≤ 4° and converging by ≤ 3°. Thickness runs from
``L_d`` along its normal to ``L_s``. Fascicles are parallel straight lines at the pennation angle θ to ``L_d``;
a fascicle's length runs between its intersections with ``L_d`` and ``L_s``.

Tissue from the skin down: dermis, hypoechoic subcutaneous fat with a few septa, the superficial
aponeurosis, muscle (speckle, slow brightness variation, hyperechoic perimysium along many fascicles), the
deep aponeurosis, then a deeper muscle and often bone with its acoustic shadow. The map goes through
``physics.simulate_bmode``. The fascicle mask holds short annotator-like strokes on a few visible fascicles.

``make_phantom`` is ``draw_geometry`` then ``render``: the cine loops of ``architecture2d_sequence`` render one
geometry, changed from frame to frame, with the texture of the same ``Draws.seeded`` in every frame. The
image-level phantoms (``classify2d``, ``regress2d``) render geometries of their own (with a central aponeurosis
for a bipennate muscle) and an ``Appearance`` (muscle echo and texture; striation spacing, contrast and
curvature; display gain and residual depth attenuation) that tells muscle types, myopathy, states and
subjects apart; the default appearance is this module's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d

from sonomuscle.data.phantoms.dataset import drawn_cases, split_cases, write_png
from sonomuscle.data.phantoms.physics import acoustic_shadow, simulate_bmode
from sonomuscle.data.phantoms.texture import slow_field
from sonomuscle.errors import InputError
from sonomuscle.io import atomic_write_json, atomic_write_with

TRUTH_COLUMNS = (
    "case",
    "spacing_mm",
    "thickness_mm",
    "thickness_mean_mm",
    "pennation_angle_deg",
    "fascicle_length_mm",
)
THICKNESS_RANGE_MM = (10.0, 30.0)
# from long, flat fascicles at rest to strongly contracted gastrocnemius (observers measure up to 55°)
PENNATION_RANGE_DEG = (5.0, 60.0)
MAX_TILT_DEG = 4.0
MAX_CONVERGENCE_DEG = 6.0
BAND_RANGE_MM = (0.6, 1.5)

# backscatter amplitude of each tissue relative to the display's reference level (physics.simulate_bmode);
# tuned so aponeurosis and muscle grey levels sit near the real DL_Track images' medians
_DERMIS, _FAT, _SEPTUM, _APONEUROSIS, _MUSCLE, _PERIMYSIUM, _BONE = 0.1, 0.015, 0.08, 0.2, 0.02, 0.16, 0.3
_MIN_TRACED_VISIBILITY = 0.3  # an annotator does not trace a fascicle fainter than this along its stroke


@dataclass(frozen=True)
class FascicleLines:
    """The muscle's parallel fascicle lines: where they run and how visible they are along their length."""

    offsets: np.ndarray  # (n,) mm, across the fascicle direction
    strength: np.ndarray  # (n,) peak brightness in [0, 1]
    presence: np.ndarray  # (n, bins) visibility in [0, 1] along each line, one bin per pixel spacing
    along_start: float  # mm, the along-line coordinate of bin 0
    pivot: np.ndarray = field(default_factory=lambda: np.zeros(2))  # mm, (x, y) where offset and along are 0

    def visibility(self, line: int, t: np.ndarray, spacing: float) -> np.ndarray:
        """Brightness of line ``line`` at along-line positions ``t`` (mm); 0 off the sampled range."""
        bins = np.floor((t - self.along_start) / spacing).astype(int)
        inside = (bins >= 0) & (bins < self.presence.shape[1])
        return np.where(
            inside, self.strength[line] * self.presence[line, bins.clip(0, self.presence.shape[1] - 1)], 0.0
        )


@dataclass(frozen=True)
class Line:
    """``y = a + b·x`` in mm (independent of ``sonomuscle.measures``: the truth shares no code with its check)."""

    a: float
    b: float

    def y(self, x: np.ndarray | float) -> np.ndarray | float:
        return self.a + self.b * x

    def hit(self, point: np.ndarray, direction: np.ndarray) -> float:
        """Signed distance along ``direction`` (unit) from ``point`` to this line."""
        return (self.a + self.b * point[0] - point[1]) / (direction[1] - self.b * direction[0])


@dataclass
class Phantom:
    """One longitudinal image ``(X, Y)`` in [0, 1], its 0/1 masks, exact truth and isotropic spacing (mm)."""

    image: np.ndarray
    aponeurosis: np.ndarray
    fascicle: np.ndarray
    truth: dict[str, float]
    spacing: tuple[float, float]


@dataclass(frozen=True)
class Geometry:
    """Depths (mm) of the layers and the architecture lines of one phantom."""

    dermis: float
    fat_bottom: float
    band_s: float
    band_d: float
    superficial: Line
    deep: Line
    theta: float  # pennation angle, rad
    psi: float  # fascicle direction from +x (y down), rad
    # None: fascicle lines laid out across the image from its corner; a point (mm): laid out around it over a
    # disc that holds the image at any psi, so the same draws give the same lines turned (see ``_striations``)
    pivot: tuple[float, float] | None = None
    # > 0: a central aponeurosis this thick (mm) midway between L_s and L_d, the fascicles below it mirrored
    # about it (bipennate); the truth and the fascicle mask know only the fascicles above it
    central_band: float = 0.0

    def central(self) -> Line:
        """The midline between ``L_s`` and ``L_d``, where a central aponeurosis lies."""
        return Line((self.superficial.a + self.deep.a) / 2, (self.superficial.b + self.deep.b) / 2)


@dataclass(frozen=True)
class Appearance:
    """How the muscle between the aponeuroses looks, the display gain and the depth attenuation that time-gain
    compensation leaves; the defaults are this module's."""

    muscle: float = _MUSCLE  # mean echogenicity
    variation: float = 0.25  # depth of its slow brightness variation (``texture.slow_field``)
    perimysium: float = _PERIMYSIUM  # peak echogenicity of the fascicle striations
    fascicle_gap_mm: tuple[float, float] = (0.7, 2.5)  # range of the gap between neighbouring striations
    striation_run_mm: float = 2.0  # length scale on which a striation fades in and out
    # 1/mm: the striations bend into parabolas, vertex midway along the image (the truth and the fascicle
    # mask know straight fascicles only)
    fascicle_curvature: float = 0.0
    gain_db: tuple[float, float] = (-6.0, 0.0)  # range of the display gain, drawn per image
    residual_attenuation_db_cm: float = 0.0  # depth attenuation that time-gain compensation leaves


DEFAULT_APPEARANCE = Appearance()


@dataclass(frozen=True)
class Draws:
    """The random streams of one rendering: tissue texture, annotation, imaging (parameters and scatterers).

    A single phantom draws all three from one generator, in that order. A cine frame gets three generators
    seeded alike in every frame and whole-image scatterer draws: each draws the same numbers whatever the
    geometry, so the frames share their texture and differ only where the geometry moved.
    """

    tissue: np.random.Generator
    annotation: np.random.Generator
    imaging: np.random.Generator
    stable: bool = False  # ``stable_draws`` of ``physics.simulate_bmode``

    @classmethod
    def shared(cls, rng: np.random.Generator) -> Draws:
        return cls(rng, rng, rng)

    @classmethod
    def seeded(cls, seed: int) -> Draws:
        return cls(*(np.random.default_rng([seed, stream]) for stream in range(3)), stable=True)


def make_phantom(
    rng: np.random.Generator,
    shape: tuple[int, int] = (256, 256),
    spacing: float = 0.2,
    pennation_range_deg: tuple[float, float] = PENNATION_RANGE_DEG,
) -> Phantom:
    """A random pennate muscle: thickness 10–30 mm, pennation in ``pennation_range_deg`` (5–60°), tilted and
    converging aponeuroses."""
    geometry = draw_geometry(rng, shape, spacing, pennation_range_deg)
    return render(geometry, Draws.shared(rng), shape, spacing)


def render(
    g: Geometry,
    draws: Draws,
    shape: tuple[int, int] = (256, 256),
    spacing: float = 0.2,
    appearance: Appearance = DEFAULT_APPEARANCE,
) -> Phantom:
    """The B-mode image, masks and exact truth of geometry ``g`` seen with ``appearance``; everything random
    beside them from ``draws``."""
    x, y = np.meshgrid(np.arange(shape[0]) * spacing, np.arange(shape[1]) * spacing, indexing="ij")
    xc = (shape[0] - 1) / 2 * spacing
    in_superficial_band = (y >= g.superficial.y(x) - g.band_s) & (y < g.superficial.y(x))
    in_deep_band = (y >= g.deep.y(x)) & (y < g.deep.y(x) + g.band_d)
    in_central_band = np.abs(y - g.central().y(x)) < g.central_band / 2
    bands = in_superficial_band | in_deep_band | in_central_band

    echo, lines = _tissue_map(x, y, g, bands, draws.tissue, spacing, appearance)
    echo = echo * 10.0 ** (-appearance.residual_attenuation_db_cm * y / 200.0)  # mm → cm, amplitude dB
    direction = np.array([math.cos(g.psi), math.sin(g.psi)])
    fascicle, lengths, traced = _annotate(
        lines, direction, g.superficial, g.deep, shape, spacing, draws.annotation
    )
    rng = draws.imaging
    image = simulate_bmode(
        echo,
        (spacing, spacing),
        rng,
        centre_frequency_mhz=rng.uniform(6.0, 9.0),
        fractional_bandwidth=rng.uniform(0.25, 0.4),
        f_number=rng.uniform(3.0, 4.5),
        dynamic_range_db=rng.uniform(45.0, 55.0),
        gain_db=rng.uniform(*appearance.gain_db),
        noise_db=-80.0,
        specular_threshold=0.1,  # point reflectors in aponeuroses and bone
        stable_draws=draws.stable,
    )
    columns = np.arange(shape[0]) * spacing
    truth = {
        "spacing_mm": float(spacing),
        "thickness_mm": normal_distance(xc, g.deep, g.superficial),
        "thickness_mean_mm": float(np.mean([normal_distance(c, g.deep, g.superficial) for c in columns])),
        "pennation_angle_deg": math.degrees(g.theta),
        "fascicle_length_mm": _traced_median(lengths, traced),
    }
    return Phantom(image, bands.astype(np.uint8), fascicle, truth, (spacing, spacing))


def _traced_median(lengths: list[float], traced: list[float]) -> float:
    """The length at half the total traced length, fascicles sorted by length: the truth a length-weighted
    median estimator is held to, written here apart from the estimator so that a bug there cannot hide."""
    if not lengths:
        return math.nan
    order = np.argsort(lengths, kind="stable")
    cumulative = np.cumsum(np.asarray(traced, dtype=float)[order])
    return float(np.asarray(lengths, dtype=float)[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def write_dataset(
    out: str | Path, n: int, seed: int, pennation_range_deg: tuple[float, float] = PENNATION_RANGE_DEG
) -> Path:
    """Write ``n`` phantoms as PNG (images/, aponeurosis/, fascicle/), ``truth.csv`` and ``datalist.json``.

    Cases are :func:`~sonomuscle.data.phantoms.dataset.drawn_cases`. Returns the datalist path.
    """
    out = Path(out)
    rows, entries = [], []
    make = partial(make_phantom, pennation_range_deg=pennation_range_deg)
    for name, phantom in drawn_cases(n, seed, make, "architecture2d phantoms"):
        entry: dict = {}
        arrays = {
            "image": np.round(phantom.image * 255),
            "aponeurosis": phantom.aponeurosis * 255,
            "fascicle": phantom.fascicle * 255,
        }
        for key, array in arrays.items():
            relative = f"{'images' if key == 'image' else key}/{name}.png"
            write_png(out / relative, array)
            entry[key] = relative
        entries.append({**entry, "spacing": list(phantom.spacing)})
        rows.append({"case": name, **phantom.truth})
    atomic_write_with(
        out / "truth.csv", lambda p: pd.DataFrame(rows, columns=TRUTH_COLUMNS).to_csv(p, index=False)
    )
    return atomic_write_json(out / "datalist.json", split_cases(entries))


def draw_geometry(
    rng: np.random.Generator,
    shape: tuple[int, int],
    spacing: float,
    pennation_range_deg: tuple[float, float] = PENNATION_RANGE_DEG,
) -> Geometry:
    """Layer depths, aponeurosis lines (tilt ≤ 4°, convergence ≤ 6°), thickness and pennation angle."""
    xc, depth = (shape[0] - 1) / 2 * spacing, shape[1] * spacing
    dermis = rng.uniform(0.8, 1.5)
    fat_bottom = dermis + rng.uniform(2.0, 8.0)
    band_s, band_d = rng.uniform(*BAND_RANGE_MM, size=2)
    max_tilt = math.radians(MAX_TILT_DEG)
    tilt_d = rng.uniform(-max_tilt, max_tilt)
    tilt_s = float(
        np.clip(tilt_d + math.radians(rng.uniform(-1, 1) * MAX_CONVERGENCE_DEG), -max_tilt, max_tilt)
    )
    superficial = Line(fat_bottom + band_s - math.tan(tilt_s) * xc, math.tan(tilt_s))
    # room below L_s for L_d at both lateral edges, its band and ≥ 8 mm of deeper tissue
    room = depth - superficial.y(xc) - 2 * math.tan(max_tilt) * xc - band_d - 8.0
    if room < THICKNESS_RANGE_MM[0] or xc < 10.0:
        raise InputError(None, f"a {2 * xc:.0f} mm wide, {depth:.0f} mm deep image cannot hold the phantom")
    thickness = rng.uniform(THICKNESS_RANGE_MM[0], min(THICKNESS_RANGE_MM[1], room))
    deep = _deep_line(superficial, math.tan(tilt_d), xc, thickness)
    theta = math.radians(rng.uniform(*pennation_range_deg))
    psi = tilt_d - rng.choice([-1.0, 1.0]) * theta  # either lateral direction rises toward L_s
    return Geometry(dermis, fat_bottom, band_s, band_d, superficial, deep, theta, psi)


def _tissue_map(
    x: np.ndarray,
    y: np.ndarray,
    g: Geometry,
    bands: np.ndarray,
    rng: np.random.Generator,
    spacing: float,
    appearance: Appearance,
) -> tuple[np.ndarray, FascicleLines]:
    """Echogenicity from the skin down, and the muscle's fascicle lines (see ``_striations``)."""
    echo = np.where(y < g.dermis, _DERMIS, _FAT).astype(np.float32)
    echo = np.maximum(echo, _septa(x, y, g.dermis, g.fat_bottom, rng))
    layout = (appearance.fascicle_gap_mm, appearance.striation_run_mm, appearance.fascicle_curvature)
    lines, striations = _striations(x, y, g.psi, rng, spacing, g.pivot, *layout)
    if g.central_band > 0:
        central = g.central()
        _, mirrored = _striations(x, y, 2 * math.atan(central.b) - g.psi, rng, spacing, None, *layout)
        striations = np.where(y >= central.y(x), mirrored, striations)
    muscle = (y >= g.superficial.y(x)) & (y < g.deep.y(x))
    texture = appearance.muscle * slow_field(x.shape, rng, spacing, appearance.variation)
    echo[muscle] = (texture + appearance.perimysium * striations)[muscle]
    # a deeper muscle with its own, fainter fascicles
    floor = g.deep.y(x) + g.band_d
    deeper_psi = math.atan(g.deep.b) - rng.choice([-1.0, 1.0]) * math.radians(rng.uniform(5.0, 25.0))
    _, deeper_striations = _striations(x, y, deeper_psi, rng, spacing)
    below = y >= floor
    echo[below] = (_MUSCLE * slow_field(x.shape, rng, spacing, 0.25) + 0.7 * _PERIMYSIUM * deeper_striations)[
        below
    ]
    echo[bands] = (_APONEUROSIS * rng.uniform(0.55, 1.0) * slow_field(x.shape, rng, spacing, 0.15))[bands]
    if rng.random() < 0.6:
        echo = _bone(echo, x, y, floor, rng, spacing)
    return echo, lines


def _deep_line(superficial: Line, slope: float, xc: float, thickness: float) -> Line:
    """``L_d`` with the given slope whose normal at the lateral centre meets ``L_s`` after ``thickness`` mm."""
    r = math.hypot(1.0, slope)
    # P = (xc, y_p) on L_d; P + thickness·(slope, -1)/r lies on L_s
    y_p = superficial.y(xc + thickness * slope / r) + thickness / r
    return Line(y_p - slope * xc, slope)


def normal_distance(x: float, deep: Line, superficial: Line) -> float:
    """Thickness (mm) at lateral position ``x``: from ``L_d`` along its normal to ``L_s``."""
    r = math.hypot(1.0, deep.b)
    return float(abs(superficial.hit(np.array([x, deep.y(x)]), np.array([deep.b, -1.0]) / r)))


def _striations(
    x: np.ndarray,
    y: np.ndarray,
    psi: float,
    rng: np.random.Generator,
    spacing: float,
    pivot: tuple[float, float] | None = None,
    gap_mm: tuple[float, float] = (0.7, 2.5),
    run_mm: float = 2.0,
    curvature: float = 0.0,
) -> tuple[FascicleLines, np.ndarray]:
    """Hyperechoic perimysium along parallel fascicles at direction ``psi``: thin, intermittent lines
    ``gap_mm`` apart, fading in and out on a ``run_mm`` scale, bent by ``curvature`` (1/mm).

    Lines are placed across the image's extent, or with a ``pivot`` across a disc around it that holds the image
    at any ``psi``: the number of draws then does not depend on ``psi``, and a turned ``psi`` turns the same
    lines about the pivot. Returns the lines (offsets and visibility) and a [0, 1] brightness map.
    """
    origin = np.zeros(2) if pivot is None else np.asarray(pivot, dtype=float)
    across = -math.sin(psi) * (x - origin[0]) + math.cos(psi) * (y - origin[1])
    along = math.cos(psi) * (x - origin[0]) + math.sin(psi) * (y - origin[1])
    across = across - 0.5 * curvature * (along - (along.min() + along.max()) / 2) ** 2
    if pivot is None:
        low, high, along_start, along_end = across.min(), across.max(), along.min(), along.max()
    else:
        radius = float(np.hypot(x - origin[0], y - origin[1]).max())
        low, high, along_start, along_end = -radius, radius, -radius, radius
    start = low - 3.0
    offsets = start + np.cumsum(rng.uniform(*gap_mm, size=int((high - start) / gap_mm[0]) + 2))
    nearest = np.clip(np.searchsorted(offsets, across), 1, len(offsets) - 1)
    nearest = np.where(
        np.abs(across - offsets[nearest - 1]) < np.abs(across - offsets[nearest]), nearest - 1, nearest
    )
    width = rng.uniform(0.12, 0.25, size=len(offsets))
    strength = rng.uniform(0.15, 1.0, size=len(offsets))
    # intermittency: each line fades in and out along its length on a few-mm scale
    bins = np.floor((along - along_start) / spacing).astype(int)
    n_bins = int((along_end - along_start) / spacing) + 1
    presence = gaussian_filter1d(rng.standard_normal((len(offsets), n_bins)), run_mm / spacing, axis=1)
    presence = np.clip(0.2 + 1.5 * presence / (presence.std() + 1e-12), 0.0, 1.0)
    profile = np.exp(-0.5 * ((across - offsets[nearest]) / width[nearest]) ** 2)
    brightness = (strength[nearest] * presence[nearest, bins] * profile).astype(np.float32)
    return FascicleLines(offsets, strength, presence, float(along_start), origin), brightness


def _septa(x: np.ndarray, y: np.ndarray, top: float, bottom: float, rng: np.random.Generator) -> np.ndarray:
    """A few thin, wavy, broken connective-tissue septa running roughly along the skin inside the fat."""
    echo = np.zeros(x.shape, dtype=np.float32)
    for _ in range(rng.integers(1, 5)):
        depth = rng.uniform(top + 0.5, max(top + 0.6, bottom - 0.5))
        slope = math.tan(math.radians(rng.uniform(-8.0, 8.0)))
        wave = rng.uniform(0.2, 0.8) * np.sin(
            2 * math.pi * x / rng.uniform(8.0, 25.0) + rng.uniform(0, 2 * math.pi)
        )
        centre = depth + slope * (x - x.mean()) + wave
        on = np.sin(2 * math.pi * x / rng.uniform(6.0, 15.0) + rng.uniform(0, 2 * math.pi)) > -0.3
        echo = np.maximum(echo, _SEPTUM * on * np.exp(-0.5 * ((y - centre) / 0.15) ** 2))
    return echo


def _bone(
    echo: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    floor: np.ndarray,
    rng: np.random.Generator,
    spacing: float,
) -> np.ndarray:
    """A bright cortex, convex toward the skin, ≥ 4 mm below ``floor`` where it fits, with its acoustic shadow."""
    bottom = y.max() - 2.0
    top = floor.max() + 4.0
    if top >= bottom:
        return echo
    surface = rng.uniform(top, bottom) + rng.uniform(0.0, 0.02) * (x - rng.uniform(x.min(), x.max())) ** 2
    cortex = (y >= surface) & (y < surface + rng.uniform(0.8, 1.5))
    echo = np.where(cortex, _BONE, echo)
    return acoustic_shadow(echo, cortex, (spacing, spacing), attenuation_per_mm=4.0)


def _annotate(
    lines: FascicleLines,
    direction: np.ndarray,
    superficial: Line,
    deep: Line,
    shape: tuple[int, int],
    spacing: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[float], list[float]]:
    """Strokes 5–25 mm long (some broken) on a few clearly visible fascicles ≥ 3 mm apart.

    Like a human annotator: the brightest lines first, each traced over its most visible stretch, and a
    line too faint there (mean visibility < ``_MIN_TRACED_VISIBILITY``) is passed over. Returns the mask,
    the chosen fascicles' full lengths between the aponeuroses and their traced lengths (the weights of
    the measured median, see ``sonomuscle.measures.architecture``).
    """
    normal = np.array([-direction[1], direction[0]])
    extent = (np.array(shape) - 1) * spacing
    mask = np.zeros(shape, dtype=np.uint8)
    lengths: list[float] = []
    traced: list[float] = []
    wanted = rng.integers(2, 7)
    chosen: list[float] = []
    for line in np.argsort(-(lines.strength + rng.uniform(0.0, 0.2, size=len(lines.strength)))):
        offset = lines.offsets[line]
        if len(chosen) == wanted:
            break
        if any(abs(offset - other) < 3.0 for other in chosen):
            continue
        base = lines.pivot + offset * normal
        t_d, t_s = deep.hit(base, direction), superficial.hit(base, direction)
        lo, hi = sorted((t_d, t_s))
        lo, hi = lo + 1.0, hi - 1.0  # strokes stay clear of the aponeuroses
        for axis in (0, 1):  # and inside the image
            if abs(direction[axis]) > 1e-9:
                bounds = sorted(
                    ((0.0 - base[axis]) / direction[axis], (extent[axis] - base[axis]) / direction[axis])
                )
                lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
        if hi - lo < 5.0:
            continue
        stroke = rng.uniform(5.0, min(25.0, hi - lo))
        start, visibility = _most_visible_stretch(lines, line, lo, hi, stroke, spacing)
        if visibility < _MIN_TRACED_VISIBILITY:
            continue
        _draw(mask, base, direction, _fragments(start, stroke, rng), spacing, wide=rng.random() < 0.5)
        lengths.append(abs(t_s - t_d))
        traced.append(stroke)
        chosen.append(offset)
    return mask, lengths, traced


def _most_visible_stretch(
    lines: FascicleLines, line: int, lo: float, hi: float, length: float, spacing: float
) -> tuple[float, float]:
    """Start (mm along the line) of the ``length``-mm window in ``[lo, hi]`` with the highest mean visibility."""
    t = np.arange(lo, hi, spacing)
    window = min(max(1, round(length / spacing)), len(t))
    cumulative = np.concatenate([[0.0], np.cumsum(lines.visibility(line, t, spacing))])
    means = (cumulative[window:] - cumulative[:-window]) / window
    best = int(np.argmax(means))
    return float(t[best]), float(means[best])


def _fragments(start: float, length: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """One stroke, or with probability 0.4 two or three pieces separated by 0.6–2 mm gaps."""
    if rng.random() >= 0.4 or length < 10.0:
        return [(start, start + length)]
    cuts = np.sort(rng.uniform(start + 2.0, start + length - 2.0, size=rng.integers(1, 3)))
    pieces, begin = [], start
    for cut in cuts:
        gap = rng.uniform(0.6, 2.0)
        if cut - gap / 2 - begin > 2.0:
            pieces.append((begin, cut - gap / 2))
            begin = cut + gap / 2
    return [*pieces, (begin, start + length)]


def _draw(
    mask: np.ndarray,
    base: np.ndarray,
    direction: np.ndarray,
    pieces: list[tuple[float, float]],
    spacing: float,
    wide: bool,
) -> None:
    """Rasterise line pieces one pixel wide (two when ``wide``) by dense sampling along the line."""
    for t0, t1 in pieces:
        t = np.arange(t0, t1, spacing / 4)
        points = np.rint((base[:, None] + direction[:, None] * t) / spacing).astype(int)
        thin_axis = 1 if abs(direction[0]) >= abs(direction[1]) else 0  # thicken across the line
        for shift in (0, 1) if wide else (0,):
            shifted = points.copy()
            shifted[thin_axis] += shift
            keep = (shifted >= 0).all(0) & (shifted[0] < mask.shape[0]) & (shifted[1] < mask.shape[1])
            mask[shifted[0, keep], shifted[1, keep]] = 1
