"""Transverse B-mode phantoms of the anterior thigh with exact cross-sectional areas, and their writer.

Geometry (arrays ``(X, Y)``, X lateral, Y depth with the skin at y = 0, pixel ``i`` centred at ``i·spacing``
mm, square pixels of 0.2–0.3 mm on a 256 × 256 grid): under the dermis lies subcutaneous fat whose deep
border is a gently tilted, wavy curve, then the fascia lata, then the quadriceps above the femur, a circle
whose upper cortex shadows everything below it. Two to four of the four muscles are in the field of view,
each in its anatomical place and at its own size whichever others are in view (the image's right is
lateral), so that a muscle can be told from the others by where it lies, as in a study's images:

- rectus femoris, vastus lateralis and vastus medialis are star-shaped regions around a centre: a rotated
  ellipse with a low-order radial Fourier wobble, cut by half-planes (below the fascia lata, off the femur
  and vastus intermedius, and one between every two of them). The cuts are blended with a soft minimum of
  the radii, so the regions press flat against each other with rounded corners and never overlap;
- vastus intermedius is a crescent on the femur: between the radii ``R_in`` and ``R_in + T(s)`` around the
  femur's centre over an arc, its thickness ``T`` tapering to rounded tips.

Every muscle is wrapped in its own hyperechoic fascia band (0.4–1 mm, outside its label), labelled regions lie
≥ 1.3 mm apart, and each lies wholly in the image with ≥ 2 pixels to spare. Inside a muscle the echogenicity
has its own mean (per case and muscle), slow variation, and hyperechoic perimysium: dots and short strands,
the transverse cut of the fascicle septa, and a few longer intramuscular septa. The map goes through
``physics.simulate_bmode``; the femur's cortex casts an acoustic shadow.

Truth, per case and structure present (``truth.csv``, one row each): ``area_mm2`` and ``perimeter_mm`` of
the continuous region, by the shoelace formula and the length of its boundary sampled at 4096 vertices; the
label is the pixels whose centres lie inside that same region, so ``pixels × spacing²`` matches the area to
well under 1 %. ``echo_intensity`` and ``echo_intensity_sd`` are the mean and population standard deviation
(ddof 0) of the saved 8-bit grey values (0–255) inside the saved label of that structure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.ndimage import distance_transform_edt, gaussian_filter

from sonomuscle.data.phantoms.dataset import drawn_cases, split_cases, write_png
from sonomuscle.data.phantoms.physics import acoustic_shadow, simulate_bmode
from sonomuscle.data.phantoms.texture import slow_field
from sonomuscle.io import atomic_write_json, atomic_write_rows

CLASSES: dict[str, int] = {
    "rectus_femoris": 1,
    "vastus_lateralis": 2,
    "vastus_intermedius": 3,
    "vastus_medialis": 4,
}
SHAPE = (256, 256)
SPACING_RANGE_MM = (0.2, 0.3)
AREA_RANGE_MM2 = (80.0, 1200.0)  # 0.8–12 cm², as the quadriceps heads on a mid-thigh scan
# the image's right (+1) is lateral in every phantom: a study scans with one probe orientation, and the vasti
# are told apart by side (with sides mixed, vastus lateralis and medialis differ only in shape)
LATERAL_SIDE = 1.0
MARGIN_PX = 3  # construction margin: a label keeps ≥ 2 pixels (its centres ≥ 3 spacings) from the image edge
N_VERTICES = 4096  # boundary samples for the truth polygons
_SOFTNESS_MM = 1.5  # corner radius scale where a muscle presses against a neighbour
_MAX_LAYOUT_TRIES = 200
_ATTENUATION = 0.5  # dB/cm/MHz
_MAX_LOSS_DB = 55.0

# backscatter amplitude of each tissue relative to the display's reference level (physics.simulate_bmode),
# on architecture2d's scale, so the same display settings give the same greys
_DERMIS, _FAT, _SEPTUM, _FASCIA, _BETWEEN, _BONE = 0.1, 0.012, 0.07, 0.22, 0.012, 0.8
_MUSCLE_RANGE = (0.006, 0.04)  # mean echogenicity of one muscle, drawn log-uniform per case and muscle
_PERIMYSIUM_RANGE = (0.05, 0.15)


@dataclass(frozen=True)
class HalfPlane:
    """The points ``p`` with ``normal · p ≥ offset`` (``normal`` a unit vector)."""

    normal: np.ndarray
    offset: float

    def reach(self, centre: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """Distance along each unit ``direction`` (..., 2) from ``centre`` (inside) to the border; inf if never."""
        towards = direction @ self.normal
        with np.errstate(divide="ignore"):
            return np.where(towards < -1e-12, (self.offset - self.normal @ centre) / towards, np.inf)

    def margin(self, point: np.ndarray) -> float:
        """How far ``point`` lies inside (negative: outside)."""
        return float(self.normal @ point - self.offset)


@dataclass(frozen=True)
class StarRegion:
    """A wobbly rotated ellipse around ``centre``, cut by ``limits`` with rounded corners (a soft minimum)."""

    centre: np.ndarray
    semi_axes: tuple[float, float]
    angle: float  # rad, of the first semi-axis from +x (y down)
    wobble: np.ndarray  # (3, 2): amplitude and phase of radial harmonics 2, 3, 4
    limits: tuple[HalfPlane, ...] = ()
    scale: float = 1.0

    def free_radius(self, phi: np.ndarray) -> np.ndarray:
        a, b = self.semi_axes
        rel = phi - self.angle
        ellipse = a * b / np.hypot(b * np.cos(rel), a * np.sin(rel))
        harmonics = sum(c * np.cos(k * rel + p) for k, (c, p) in enumerate(self.wobble, start=2))
        return self.scale * ellipse * (1.0 + harmonics)

    def radius(self, phi: np.ndarray) -> np.ndarray:
        direction = np.stack([np.cos(phi), np.sin(phi)], axis=-1)
        reaches = [limit.reach(self.centre, direction) for limit in self.limits]
        return _soft_min(np.stack([self.free_radius(phi), *reaches]), _SOFTNESS_MM)

    def boundary(self) -> np.ndarray:
        phi = np.linspace(0.0, 2 * math.pi, N_VERTICES, endpoint=False)
        return self.centre + self.radius(phi)[:, None] * np.stack([np.cos(phi), np.sin(phi)], axis=-1)

    def contains(self, points: np.ndarray) -> np.ndarray:
        d = points - self.centre
        return np.hypot(d[..., 0], d[..., 1]) < self.radius(np.arctan2(d[..., 1], d[..., 0]))

    def shrunk(self, factor: float) -> StarRegion:
        return replace(self, scale=self.scale * factor)


@dataclass(frozen=True)
class Crescent:
    """Vastus intermedius on the femur: radii ``inner`` to ``inner + T(s)`` around ``centre`` over an arc.

    ``s`` runs from 0 to 1 over the arc from angle ``start`` through ``span`` (rad); ``T`` follows
    ``sqrt(sin(π s))``, so the tips are round, with a slow wobble.
    """

    centre: np.ndarray
    inner: float
    start: float
    span: float
    thickness: float
    wobble: np.ndarray  # (2, 2): amplitude and phase of harmonics 1, 2 along the arc

    def depth(self, s: np.ndarray) -> np.ndarray:
        harmonics = sum(c * np.sin(2 * math.pi * k * s + p) for k, (c, p) in enumerate(self.wobble, start=1))
        return self.thickness * np.sqrt(np.clip(np.sin(math.pi * s), 0.0, None)) * (1.0 + harmonics)

    def boundary(self) -> np.ndarray:
        s = np.linspace(0.0, 1.0, N_VERTICES // 2 + 1)
        back = s[-2:0:-1]
        radii = np.concatenate([self.inner + self.depth(s), np.full(len(back), self.inner)])
        angles = self.start + self.span * np.concatenate([s, back])
        return self.centre + radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=-1)

    def contains(self, points: np.ndarray) -> np.ndarray:
        d = points - self.centre
        rho = np.hypot(d[..., 0], d[..., 1])
        s = np.mod(np.arctan2(d[..., 1], d[..., 0]) - self.start, 2 * math.pi) / self.span
        return (s <= 1.0) & (rho >= self.inner) & (rho <= self.inner + self.depth(np.clip(s, 0.0, 1.0)))

    def reach(self) -> float:
        """Radius around the femur's centre that holds the whole crescent."""
        return self.inner + float(self.depth(np.linspace(0.0, 1.0, 513)).max())

    def shrunk(self, factor: float) -> Crescent:
        """Thinner and shorter about the same middle angle."""
        return replace(
            self,
            start=self.start + self.span * (1 - factor) / 2,
            span=self.span * factor,
            thickness=self.thickness * factor,
        )


Muscle = StarRegion | Crescent  # a closed region in mm: ``boundary()`` (N_VERTICES points) and ``contains``


@dataclass(frozen=True)
class FatLayer:
    """Subcutaneous fat from the dermis down to a tilted, wavy deep border (mm)."""

    top: float
    thickness: float
    tilt: float  # slope of the deep border
    amplitude: float
    wavelength: float
    phase: float
    centre: float  # lateral position where the tilt pivots

    def bottom(self, x: np.ndarray) -> np.ndarray:
        wave = self.amplitude * np.sin(2 * math.pi * x / self.wavelength + self.phase)
        return self.top + self.thickness + self.tilt * (x - self.centre) + wave

    def below(self, clearance: float) -> HalfPlane:
        """Points ≥ ``clearance`` mm below the deep border everywhere (the wave's crests included)."""
        norm = math.hypot(1.0, self.tilt)
        offset = self.top + self.thickness - self.tilt * self.centre + self.amplitude + clearance
        return HalfPlane(np.array([-self.tilt, 1.0]) / norm, offset / norm)


@dataclass(frozen=True)
class Femur:
    centre: np.ndarray
    radius: float
    cortex: float  # thickness of the cortical surface that reflects (and shadows), mm


@dataclass(frozen=True)
class Anatomy:
    """Layers, femur and the muscles in view (name → region) of one phantom; ``fascia`` band widths in mm."""

    fat: FatLayer
    fascia_lata: float
    femur: Femur
    muscles: dict[str, Muscle]
    fascia: dict[str, float]


class Structure(NamedTuple):
    """Exact truth of one muscle: its label value, area and perimeter of the continuous region."""

    value: int
    area_mm2: float
    perimeter_mm: float


class Phantom(NamedTuple):
    """One transverse image ``(X, Y)`` in [0, 1], its label map (0..4), spacing (mm), truth per muscle, and
    the anatomy it was drawn from (where the femur and its shadow are, for instance)."""

    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float]
    structures: dict[str, Structure]
    anatomy: Anatomy


def make_phantom(rng: np.random.Generator) -> Phantom:
    """A random transverse thigh: 2–4 muscles of 0.8–12 cm² each, spacing 0.2–0.3 mm, exact areas."""
    spacing = float(rng.uniform(*SPACING_RANGE_MM))
    anatomy = draw_anatomy(rng, spacing)
    x, y = np.meshgrid(*(np.arange(n) * spacing for n in SHAPE), indexing="ij")
    label = _rasterise(anatomy.muscles, x, y, spacing)
    echo = _tissue_map(anatomy, label, x, y, rng, spacing)
    depth_cm = SHAPE[1] * spacing / 10.0
    image = simulate_bmode(
        echo,
        (spacing, spacing),
        rng,
        # ~10 MHz, lower for the deepest fields of view: ≤ 55 dB two-way loss at the bottom
        centre_frequency_mhz=min(rng.uniform(8.0, 12.0), _MAX_LOSS_DB / (2 * _ATTENUATION * depth_cm)),
        fractional_bandwidth=rng.uniform(0.3, 0.5),
        f_number=rng.uniform(2.5, 4.0),
        dynamic_range_db=rng.uniform(45.0, 55.0),
        gain_db=rng.uniform(-6.0, 0.0),
        attenuation_db_cm_mhz=_ATTENUATION,
        noise_db=-100.0,  # the shadow stays dark after time-gain compensation
        specular_threshold=0.1,  # point reflectors in fascia and bone
    )
    structures = {
        name: Structure(CLASSES[name], *_area_and_perimeter(region.boundary()))
        for name, region in anatomy.muscles.items()
    }
    return Phantom(image, label, (spacing, spacing), structures, anatomy)


def write_dataset(out: str | Path, n: int, seed: int) -> Path:
    """Write ``n`` phantoms as PNG (images/, labels/), ``truth.csv`` (long: case × structure), ``datalist.json``.

    Cases are :func:`~sonomuscle.data.phantoms.dataset.drawn_cases`. Returns the datalist path.
    """
    out = Path(out)
    rows, entries = [], []
    for name, phantom in drawn_cases(n, seed, make_phantom, "csa2d phantoms"):
        grey = np.round(phantom.image * 255).astype(np.uint8)
        entry = {"image": f"images/{name}.png", "label": f"labels/{name}.png"}
        write_png(out / entry["image"], grey)
        write_png(out / entry["label"], phantom.label)
        entries.append({**entry, "spacing": list(phantom.spacing)})
        for structure, truth in phantom.structures.items():
            inside = grey[phantom.label == truth.value].astype(np.float64)
            rows.append(
                {
                    "case": name,
                    "structure": structure,
                    "value": truth.value,
                    "area_mm2": truth.area_mm2,
                    "area_cm2": truth.area_mm2 / 100.0,
                    "perimeter_mm": truth.perimeter_mm,
                    "echo_intensity": float(inside.mean()),
                    "echo_intensity_sd": float(inside.std()),
                }
            )
    atomic_write_rows(out / "truth.csv", rows, significant=None)  # exact, as the phantom was drawn
    return atomic_write_json(out / "datalist.json", {"classes": CLASSES, **split_cases(entries)})


def draw_anatomy(rng: np.random.Generator, spacing: float) -> Anatomy:
    """Draw layouts until every muscle one puts in view has an area in ``AREA_RANGE_MM2``."""
    for _ in range(_MAX_LAYOUT_TRIES):
        anatomy = _try_anatomy(rng, spacing)
        if anatomy is not None:
            return anatomy
    raise RuntimeError(f"no csa2d layout fits a {SHAPE} image at {spacing:.3f} mm")


def _try_anatomy(rng: np.random.Generator, spacing: float) -> Anatomy | None:
    """One layout in a square field of view ``size`` mm across, proportions as on a mid-thigh scan; None
    if a muscle does not fit."""
    size = (SHAPE[0] - 1) * spacing
    fat = FatLayer(
        top=rng.uniform(0.8, 1.6),
        thickness=rng.uniform(0.04, 0.2) * size,
        tilt=math.tan(math.radians(rng.uniform(-4.0, 4.0))),
        amplitude=rng.uniform(0.0, 1.0),
        wavelength=rng.uniform(20.0, 60.0),
        phase=rng.uniform(0.0, 2 * math.pi),
        centre=size / 2,
    )
    fascia_lata = rng.uniform(0.5, 1.0)
    radius = rng.uniform(0.17, 0.23) * size
    femur_top = rng.uniform(0.66, 0.84) * size
    femur = Femur(
        np.array([rng.uniform(0.38, 0.62) * size, femur_top + radius]), radius, rng.uniform(0.6, 1.2)
    )
    names = list(CLASSES)
    present = [names[i] for i in sorted(rng.choice(4, size=rng.integers(2, 5), replace=False))]
    fascia = {name: rng.uniform(0.4, 1.0) for name in present}
    top = {name: fat.below(fascia_lata + fascia[name] + 0.3) for name in present}
    muscles: dict[str, Muscle] = {}
    if "vastus_intermedius" in present:
        room_above = 0.16 * size if "rectus_femoris" in present else 0.0
        intermedius = _intermedius(
            rng, size, femur, fascia["vastus_intermedius"], top["vastus_intermedius"], room_above
        )
        muscles["vastus_intermedius"] = _fit(intermedius, top["vastus_intermedius"], size, spacing)
    side = LATERAL_SIDE
    drafts: dict[str, StarRegion] = {}
    if "rectus_femoris" in present:
        floor = femur.centre[1] - _envelope(
            femur, muscles.get("vastus_intermedius"), fascia, "rectus_femoris"
        )
        drafts["rectus_femoris"] = _rectus_femoris(rng, size, top["rectus_femoris"], floor)
    if "vastus_lateralis" in present:
        drafts["vastus_lateralis"] = _vastus_lateralis(rng, size, side)
    if "vastus_medialis" in present:
        drafts["vastus_medialis"] = _vastus_medialis(rng, size, side)
    drafts = {name: _into_view(draft, size, spacing) for name, draft in drafts.items()}
    limits = _limits(drafts, top, femur, muscles.get("vastus_intermedius"), fascia)
    if limits is None:
        return None
    for name, draft in drafts.items():  # inside its free outline, which is in view
        muscles[name] = replace(draft, limits=limits[name])
    areas = [_area_and_perimeter(region.boundary())[0] for region in muscles.values()]
    if min(areas) < AREA_RANGE_MM2[0] or max(areas) > AREA_RANGE_MM2[1]:
        return None
    return Anatomy(fat, fascia_lata, femur, {name: muscles[name] for name in present}, fascia)


def _intermedius(
    rng: np.random.Generator, size: float, femur: Femur, fascia: float, top: HalfPlane, room_above: float
) -> Crescent:
    """A crescent hugging the femur's upper surface, no thicker than the space under the fat leaves after
    ``room_above`` mm (kept for rectus femoris)."""
    inner = femur.radius + max(1.0, fascia + 0.5)
    summit = femur.centre - np.array([0.0, inner])
    room = top.margin(summit) - room_above
    half_widths = np.radians(rng.uniform(45.0, 75.0, size=2))  # tips stay above the femur's centre
    return Crescent(
        centre=femur.centre,
        inner=inner,
        start=-math.pi / 2 + math.radians(rng.uniform(-15.0, 15.0)) - half_widths[0],
        span=float(half_widths.sum()),
        thickness=min(rng.uniform(0.1, 0.2) * size, max(room, 1.0) / 1.25),  # the wobble adds ≤ 24 %
        wobble=np.stack([rng.uniform(-0.12, 0.12, 2), rng.uniform(0, 2 * math.pi, 2)], axis=-1),
    )


def _star(
    rng: np.random.Generator, centre: tuple[float, float], semi_axes: tuple[float, float], angle: float
) -> StarRegion:
    """A free outline: the ellipse and a random wobble of up to ±7 % per harmonic; no limits yet."""
    return StarRegion(
        np.array(centre),
        semi_axes,
        angle,
        np.stack([rng.uniform(-0.07, 0.07, 3), rng.uniform(0, 2 * math.pi, 3)], axis=-1),
    )


def _rectus_femoris(rng: np.random.Generator, size: float, top: HalfPlane, floor: float) -> StarRegion:
    """Superficial and central, wider than deep, centred in depth between the fat and
    ``floor`` (the depth of what lies on the femur) and filling that gap or more: the limits flatten it."""
    x = size * (0.5 + rng.uniform(-0.12, 0.12))
    shallowest = (top.offset - top.normal[0] * x) / top.normal[1]
    gap = max(floor - shallowest, 0.0)
    return _star(
        rng,
        (x, shallowest + rng.uniform(0.4, 0.6) * gap),
        (rng.uniform(0.16, 0.3) * size, gap / 2 * rng.uniform(0.7, 1.1)),
        math.radians(rng.uniform(-12.0, 12.0)),
    )


def _vastus_lateralis(rng: np.random.Generator, size: float, side: float) -> StarRegion:
    """On the lateral side, long and oblique, its lateral end the shallower."""
    centre = (size * (0.5 + side * rng.uniform(0.24, 0.34)), rng.uniform(0.3, 0.55) * size)
    semi_axes = (rng.uniform(0.18, 0.34) * size, rng.uniform(0.12, 0.24) * size)
    return _star(rng, centre, semi_axes, -side * math.radians(rng.uniform(10.0, 40.0)))


def _vastus_medialis(rng: np.random.Generator, size: float, side: float) -> StarRegion:
    """On the medial side and deeper, a rounder oval."""
    centre = (size * (0.5 - side * rng.uniform(0.24, 0.34)), rng.uniform(0.4, 0.6) * size)
    semi_axes = (rng.uniform(0.14, 0.28) * size, rng.uniform(0.1, 0.2) * size)
    return _star(rng, centre, semi_axes, side * math.radians(rng.uniform(-10.0, 45.0)))


def _envelope(femur: Femur, intermedius: Crescent | None, fascia: dict[str, float], name: str) -> float:
    """Radius around the femur's centre a muscle's label stays beyond: the femur or vastus intermedius,
    with room for both fascia bands."""
    if intermedius is None:
        return femur.radius + fascia[name] + 0.5
    return intermedius.reach() + _gap(fascia, name, "vastus_intermedius")


def _gap(fascia: dict[str, float], a: str, b: str) -> float:
    """Distance kept between two labels: their two fascia bands and a little more, at least 1.3 mm."""
    return max(1.0, fascia[a] + fascia[b]) + 0.3


def _limits(
    drafts: dict[str, StarRegion],
    top: dict[str, HalfPlane],
    femur: Femur,
    intermedius: Crescent | None,
    fascia: dict[str, float],
) -> dict[str, tuple[HalfPlane, ...]] | None:
    """The half-planes that keep each star muscle below the fat, off the femur and clear of its neighbours.

    Off the femur: the tangent to the envelope circle facing the muscle's centre (the centre must lie above
    the femur's centre, so the muscle stays out of the bone's shadow). Between two muscles: the line across
    the join of their centres where their free outlines would meet, each side set back by half their gap.
    None if a centre would not lie ≥ 3 mm inside its own limits.
    """
    limits: dict[str, list[HalfPlane]] = {}
    for name, draft in drafts.items():
        towards = draft.centre - femur.centre
        normal = towards / np.linalg.norm(towards)
        off_femur = HalfPlane(normal, normal @ femur.centre + _envelope(femur, intermedius, fascia, name))
        if towards[1] > -2.0 or min(top[name].margin(draft.centre), off_femur.margin(draft.centre)) < 3.0:
            return None
        limits[name] = [top[name], off_femur]
    names = list(drafts)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            join = drafts[b].centre - drafts[a].centre
            distance = float(np.linalg.norm(join))
            u = join / distance
            phi = math.atan2(u[1], u[0])
            reach_a = float(drafts[a].free_radius(np.array(phi)))
            reach_b = float(drafts[b].free_radius(np.array(phi + math.pi)))
            split = drafts[a].centre + np.clip(reach_a / (reach_a + reach_b), 0.3, 0.7) * join
            half_gap = _gap(fascia, a, b) / 2
            if min(u @ (split - drafts[a].centre), u @ (drafts[b].centre - split)) < half_gap + 3.0:
                return None
            limits[a].append(HalfPlane(-u, -(u @ split) + half_gap))
            limits[b].append(HalfPlane(u, u @ split + half_gap))
    return {name: tuple(planes) for name, planes in limits.items()}


def _into_view(draft: StarRegion, size: float, spacing: float) -> StarRegion:
    """Move a free outline into the image, ``MARGIN_PX`` pixels inside (shrunk first if it is too big): a
    muscle drawn near the edge moves toward its neighbours rather than shrinking away from them."""
    low, high = MARGIN_PX * spacing, size - MARGIN_PX * spacing
    points = draft.boundary()
    draft = draft.shrunk(min(1.0, (high - low) / float((points.max(axis=0) - points.min(axis=0)).max())))
    points = draft.boundary()
    shift = np.maximum(low - points.min(axis=0), 0.0) - np.maximum(points.max(axis=0) - high, 0.0)
    return replace(draft, centre=draft.centre + shift)


def _fit(crescent: Crescent, top: HalfPlane, size: float, spacing: float) -> Crescent:
    """Shrink ``crescent`` until it lies below ``top`` and ``MARGIN_PX`` pixels inside the image."""
    low, high = MARGIN_PX * spacing, size - MARGIN_PX * spacing
    for _ in range(100):
        points = crescent.boundary()
        if points.min() >= low and points.max() <= high and (points @ top.normal).min() >= top.offset:
            return crescent
        crescent = crescent.shrunk(0.93)
    return crescent  # too small by now to pass the area check


def _soft_min(values: np.ndarray, softness: float) -> np.ndarray:
    """A smooth minimum over axis 0, never above the true one: rounds the corners where two limits meet."""
    low = values.min(axis=0)
    return low - softness * np.log(np.exp(-(values - low) / softness).sum(axis=0))


def _area_and_perimeter(polygon: np.ndarray) -> tuple[float, float]:
    """Shoelace area and length of a closed polygon ``(n, 2)`` in mm."""
    x, y = polygon[:, 0], polygon[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    perimeter = float(np.linalg.norm(np.roll(polygon, -1, axis=0) - polygon, axis=1).sum())
    return area, perimeter


def _rasterise(muscles: dict[str, Muscle], x: np.ndarray, y: np.ndarray, spacing: float) -> np.ndarray:
    """Label map: a pixel takes a muscle's value when its centre lies inside the muscle's region."""
    label = np.zeros(x.shape, dtype=np.uint8)
    for name, region in muscles.items():
        points = region.boundary()
        lo = np.floor(points.min(axis=0) / spacing).astype(int)
        hi = np.ceil(points.max(axis=0) / spacing).astype(int) + 1
        box = (slice(lo[0], hi[0]), slice(lo[1], hi[1]))
        inside = region.contains(np.stack([x[box], y[box]], axis=-1))
        label[box][inside] = CLASSES[name]
    return label


def _tissue_map(
    anatomy: Anatomy,
    label: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    spacing: float,
) -> np.ndarray:
    """Echogenicity from the skin down: dermis, fat with septa, fascia lata, intermuscular tissue, the
    muscles in their fascia, the femur's cortex and its acoustic shadow."""
    fat_bottom = anatomy.fat.bottom(x)
    lobules = _lobules(x.shape, rng, spacing, (rng.uniform(3.0, 6.0),) * 2)
    echo = _BETWEEN * slow_field(x.shape, rng, spacing, 0.2) + 0.6 * _SEPTUM * lobules
    fat = y < fat_bottom
    lobules = _lobules(x.shape, rng, spacing, (rng.uniform(4.0, 8.0), rng.uniform(1.5, 3.0)))
    fat_echo = _FAT * slow_field(x.shape, rng, spacing, 0.3) + 0.6 * _SEPTUM * lobules
    fat_echo = np.maximum(fat_echo, _septa(x, y, anatomy.fat, rng))
    echo = np.where(fat, fat_echo, echo)
    echo = np.where(y < anatomy.fat.top, _DERMIS, echo)
    echo = np.where(label > 0, _muscle_texture(anatomy, label, rng, spacing), echo)
    bands, incidence = _fascia_bands(label, anatomy, spacing)
    lata = ~fat & (y < fat_bottom + anatomy.fascia_lata)
    fascia = _FASCIA * rng.uniform(0.55, 1.0) * slow_field(x.shape, rng, spacing, 0.35)
    echo = np.where(lata, fascia, np.where(bands, fascia * incidence, echo))
    femur = anatomy.femur
    rho = np.hypot(x - femur.centre[0], y - femur.centre[1])
    cortex = (rho <= femur.radius) & (rho >= femur.radius - femur.cortex)
    facing = np.clip((femur.centre[1] - y) / np.maximum(rho, 1e-9), 0.0, 1.0)  # surface across the beam: 1
    bone = np.where(cortex, _BONE * (0.1 + 0.9 * facing**2), 0.0)
    echo = np.where(rho <= femur.radius, bone, echo).astype(np.float32)
    return acoustic_shadow(echo, cortex, (spacing, spacing), attenuation_per_mm=4.0)


def _septa(x: np.ndarray, y: np.ndarray, fat: FatLayer, rng: np.random.Generator) -> np.ndarray:
    """A few thin, broken connective-tissue septa crossing the fat at up to 40° to the skin."""
    echo = np.zeros(x.shape, dtype=np.float32)
    for _ in range(rng.integers(2, 7)):
        angle = math.radians(rng.uniform(-40.0, 40.0))
        x0, y0 = rng.uniform(x.min(), x.max()), rng.uniform(fat.top, fat.top + fat.thickness)
        along = math.cos(angle) * (x - x0) + math.sin(angle) * (y - y0)
        across = -math.sin(angle) * (x - x0) + math.cos(angle) * (y - y0)
        on = (np.abs(along) < rng.uniform(3.0, 15.0)) & (
            np.sin(2 * math.pi * along / rng.uniform(4.0, 12.0) + rng.uniform(0, 2 * math.pi)) > -0.3
        )
        echo = np.maximum(echo, _SEPTUM * rng.uniform(0.5, 1.0) * on * np.exp(-0.5 * (across / 0.15) ** 2))
    return np.where((y > fat.top) & (y < fat.bottom(x)), echo, 0.0)


def _lobules(
    shape: tuple[int, ...], rng: np.random.Generator, spacing: float, size_mm: tuple[float, float]
) -> np.ndarray:
    """A broken network of thin bright septa around lobules ~``size_mm`` (lateral, depth) across, in [0, 1]:
    the zero level set of smoothed noise (its width made even by dividing by the gradient), shown in patches."""
    field = gaussian_filter(rng.standard_normal(shape), [s / spacing / 2 for s in size_mm], mode="wrap")
    steepness = np.hypot(*np.gradient(field, spacing))
    network = np.exp(-0.5 * (field / (steepness * 0.1 + 1e-12)) ** 2)
    patches = gaussian_filter(rng.standard_normal(shape), 1.5 / spacing, mode="wrap")
    return (network * np.clip(patches / patches.std(), 0.0, 1.0)).astype(np.float32)


def _muscle_texture(
    anatomy: Anatomy, label: np.ndarray, rng: np.random.Generator, spacing: float
) -> np.ndarray:
    """Inside each muscle: its own mean echogenicity (log-uniform in ``_MUSCLE_RANGE``), slow variation,
    and perimysium; zero elsewhere."""
    slow = slow_field(label.shape, rng, spacing, 0.25)
    texture = np.zeros(label.shape, dtype=np.float32)
    for name, region in anatomy.muscles.items():
        inside = label == CLASSES[name]
        mean = math.exp(rng.uniform(*np.log(_MUSCLE_RANGE)))
        texture[inside] = (mean * slow + _perimysium(region, label.shape, rng, spacing))[inside]
    return texture


def _perimysium(
    region: Muscle, shape: tuple[int, ...], rng: np.random.Generator, spacing: float
) -> np.ndarray:
    """Hyperechoic septa cut across: dots and short strands (0.1–2.5 mm) around one mean direction, and up to
    two longer, gently curved intramuscular septa, over the region's bounding box."""
    points = region.boundary()
    low, high = points.min(axis=0), points.max(axis=0)
    strength = rng.uniform(*_PERIMYSIUM_RANGE)
    count = rng.poisson(rng.uniform(0.15, 0.6) * np.prod(high - low))
    centres = rng.uniform(low, high, size=(count, 2))
    angles = rng.vonmises(2 * rng.uniform(0, math.pi), rng.uniform(0.5, 4.0), size=count) / 2  # axial
    lengths = np.clip(rng.exponential(0.5, size=count), 0.1, 2.5)
    field = np.zeros(shape, dtype=np.float32)
    _splat(
        field, _strands(centres, angles, lengths, 0.0, 16), strength * rng.uniform(0.2, 1.0, count), spacing
    )
    n_septa = rng.integers(0, 3)
    septa = _strands(
        rng.uniform(low + 0.3 * (high - low), high - 0.3 * (high - low), size=(n_septa, 2)),
        rng.uniform(0, math.pi, size=n_septa),
        rng.uniform(0.3, 0.7, size=n_septa) * float(np.min(high - low)),
        rng.uniform(-0.05, 0.05),
        256,
    )
    _splat(field, septa, strength * rng.uniform(0.6, 1.0, n_septa), spacing)
    return field


def _strands(
    centres: np.ndarray, angles: np.ndarray, lengths: np.ndarray, curvature: float, samples: int
) -> np.ndarray:
    """Points ``(n, samples, 2)`` along arcs of the given centres, directions, lengths and curvature (1/mm)."""
    t = lengths[:, None] * np.linspace(-0.5, 0.5, samples)
    along = np.stack([np.cos(angles), np.sin(angles)], axis=-1)[:, None]
    normal = np.stack([-np.sin(angles), np.cos(angles)], axis=-1)[:, None]
    return centres[:, None] + t[..., None] * along + (0.5 * curvature * t**2)[..., None] * normal


def _splat(field: np.ndarray, points: np.ndarray, strength: np.ndarray, spacing: float) -> None:
    """Brighten the pixels the points fall on to each strand's strength (the brightest strand wins)."""
    index = np.rint(points / spacing).astype(int)
    values = np.broadcast_to(strength[:, None], index.shape[:2])
    keep = (index >= 0).all(axis=-1) & (index[..., 0] < field.shape[0]) & (index[..., 1] < field.shape[1])
    np.maximum.at(field, (index[keep][:, 0], index[keep][:, 1]), values[keep])


def _fascia_bands(label: np.ndarray, anatomy: Anatomy, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Each muscle's fascia band (outside the label, as wide as drawn for it) and how squarely the beam meets
    the fascia there: a specular reflector is brightest where it lies across the beam, dim where along it."""
    distance, nearest = distance_transform_edt(label == 0, sampling=(spacing, spacing), return_indices=True)
    width = np.zeros(len(CLASSES) + 1)
    for name, value in CLASSES.items():
        width[value] = anatomy.fascia.get(name, 0.0)
    owner = label[nearest[0], nearest[1]]
    bands = (label == 0) & (distance <= width[owner] + spacing / 2)
    depth_offset = (np.arange(label.shape[1])[None, :] - nearest[1]) * spacing
    across = np.abs(depth_offset) / np.maximum(distance, 1e-9)
    incidence = 0.1 + 0.9 * gaussian_filter(np.where(distance > 0, across, 1.0), 1.5) ** 2
    return bands, incidence.astype(np.float32)
