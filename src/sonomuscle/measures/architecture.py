"""Muscle architecture from a longitudinal image's masks: thickness, pennation angle, fascicle length.

Definitions (shared with the ``architecture2d`` phantoms): ``L_s`` is the deep edge of the superficial
aponeurosis, ``L_d`` the superficial edge of the deep one, both fitted as straight lines ``y = a + b·x`` in mm
(x lateral, y depth). Thickness is the distance from ``L_d`` to ``L_s`` along ``L_d``'s normal, at the image's
lateral centre and averaged over the columns where both aponeuroses are present. A fascicle is a straight
line fitted to an annotated piece; its pennation angle is its angle to ``L_d`` and its length runs between
its intersections with ``L_d`` and ``L_s``, extrapolated beyond the image where needed. An image's angle and
length are medians over its fascicles, each weighted by how much of it is visible: a network marks short
speckle streaks as well as clear fascicles, and the streaks are flatter than the fascicles annotators trace
(23 DL_Track validation images: angles 3.7° flat on average with the plain median, 2.8° weighted). Fascicles
may descend to either side of the image: the side most of the visible fascicle length takes is the
muscle's (``fascicle_direction``, so no orientation flag is needed), and pieces tilted the other way, which
no fascicle of this muscle is, are dropped.

Masks come from a network, so every step tolerates what networks output: merged or missing aponeuroses,
thick, broken or noisy fascicle pieces, spurious blobs. What cannot be measured becomes NaN with a reason in
``qc``, never an exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import theilslopes
from skimage.measure import label, regionprops
from skimage.morphology import skeletonize

from sonomuscle.errors import InputError
from sonomuscle.measures.spacing import checked_spacing

# plausible angle between a fascicle and the deep aponeurosis (degrees)
ANGLE_RANGE_DEG = (2.0, 60.0)
# a fascicle piece must span this many pixels and stay this close (rms, pixels) to its line
MIN_PIECE_PX = 8.0
MAX_PIECE_RESIDUAL_PX = 1.5
# fragments of one fascicle: directions within this angle and each centre this close to the other's line
MERGE_ANGLE_DEG = 2.0
MERGE_OFFSET_PX = 2.0
# the two aponeuroses must share this many columns to be measured against each other
MIN_EDGE_COLUMNS = 5
MAX_EDGE_COLUMNS = 160  # columns an edge line is fitted to


@dataclass
class Line:
    """``y = a + b·x`` in mm."""

    a: float
    b: float

    def y(self, x: float | np.ndarray) -> float | np.ndarray:
        return self.a + self.b * x

    @property
    def direction(self) -> np.ndarray:
        return np.array([1.0, self.b]) / math.hypot(1.0, self.b)

    def hit(self, point: np.ndarray, direction: np.ndarray) -> float | np.ndarray:
        """Signed distance ``t`` along ``direction`` from ``point`` (or from each column of a ``(2, n)``
        array of points) to this line (NaN when parallel)."""
        denominator = direction[1] - self.b * direction[0]
        if abs(denominator) < 1e-12:
            return math.nan
        return (self.a + self.b * point[0] - point[1]) / denominator


@dataclass
class ArchitectureResult:
    """Measures of one image: medians, per-fascicle values and why anything is missing.

    Lengths are in ``units`` (mm, or px without spacing); angles are always degrees.
    """

    thickness: float
    thickness_mean: float
    pennation_angle: float
    fascicle_length: float
    pennation_angles: list[float] = field(default_factory=list)
    fascicle_lengths: list[float] = field(default_factory=list)
    visible_lengths: list[float] = field(default_factory=list)
    fascicle_direction: str = ""  # "down-right" or "down-left": found, so no orientation flag is needed
    units: str = "mm"
    qc: list[str] = field(default_factory=list)
    # the fitted geometry, in the units' coordinates (for drawing): L_s, L_d and each fascicle's
    # (centre, unit direction)
    superficial: Line | None = None
    deep: Line | None = None
    fascicle_lines: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)

    @property
    def n_fascicles(self) -> int:
        return len(self.pennation_angles)

    def as_row(self) -> dict:
        """One flat CSV row: the medians, the fascicle count, the units and the qc messages."""
        row = {
            k: getattr(self, k)
            for k in (
                "thickness",
                "thickness_mean",
                "pennation_angle",
                "fascicle_length",
                "fascicle_direction",
                "units",
            )
        }
        return {**row, "n_fascicles": self.n_fascicles, "qc": "; ".join(self.qc)}


def measure_architecture(
    aponeurosis: np.ndarray, fascicle: np.ndarray | None, spacing: tuple[float, float] | None
) -> ArchitectureResult:
    """Thickness, pennation angle and fascicle length from (X, Y) masks; no fascicle mask → thickness only."""
    step = checked_spacing(spacing, 2)
    apo = _checked_mask(aponeurosis, "aponeurosis")
    qc: list[str] = []
    superficial, deep, shared_columns = _aponeurosis_lines(apo, step, qc)
    thickness = thickness_mean = math.nan
    if superficial is not None and deep is not None:
        thickness = _normal_distance((apo.shape[0] - 1) / 2 * step[0], deep, superficial)
        thickness_mean = float(np.mean(_normal_distance(shared_columns, deep, superficial)))
    angles: list[float] = []
    lengths: list[float] = []
    visible: list[float] = []
    direction = ""
    lines: list[tuple[np.ndarray, np.ndarray]] = []
    if fascicle is not None:
        fas = _checked_mask(fascicle, "fascicle")
        if fas.shape != apo.shape:
            raise InputError(None, f"fascicle mask shape {fas.shape} differs from aponeurosis {apo.shape}")
        if superficial is None or deep is None:
            qc.append("fascicles not measured without both aponeuroses")
        else:
            angles, lengths, visible, direction, lines = _fascicles(fas, superficial, deep, step, qc)
    return ArchitectureResult(
        thickness=thickness,
        thickness_mean=thickness_mean,
        pennation_angle=weighted_median(angles, visible),
        fascicle_length=weighted_median(lengths, visible),
        pennation_angles=angles,
        fascicle_lengths=lengths,
        visible_lengths=visible,
        fascicle_direction=direction,
        units="px" if spacing is None else "mm",
        qc=qc,
        superficial=superficial,
        deep=deep,
        fascicle_lines=lines,
    )


def _checked_mask(mask: np.ndarray, name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(None, f"{name} mask must be 2D (X, Y), got shape {mask.shape}")
    if mask.dtype != bool and not np.isin(mask, (0, 1)).all():
        raise InputError(None, f"{name} mask holds values other than 0 and 1")
    return mask.astype(bool)


def _aponeurosis_lines(
    apo: np.ndarray, step: np.ndarray, qc: list[str]
) -> tuple[Line | None, Line | None, np.ndarray]:
    """``L_s``, ``L_d`` (None where unusable) and the lateral positions (mm) where both bands are present.

    The two largest components are the aponeuroses, the shallower one superficial; smaller ones are noise.
    """
    regions = sorted(regionprops(label(apo, connectivity=2)), key=lambda r: r.area, reverse=True)[:2]
    if len(regions) < 2:
        qc.append(f"expected two aponeuroses, found {len(regions)} component(s) (missing or merged)")
        return None, None, np.empty(0)
    shallow, deeper = sorted(regions, key=lambda r: r.centroid[1])
    shared = np.intersect1d(shallow.coords[:, 0], deeper.coords[:, 0]) * step[0]
    if len(shared) < MIN_EDGE_COLUMNS:
        # side by side, not one above the other: pieces of one broken band
        qc.append("the two largest aponeurosis components do not lie one above the other")
        return None, None, shared
    superficial = _edge_line(shallow.coords, step, deep_edge=True)
    deep = _edge_line(deeper.coords, step, deep_edge=False)
    return superficial, deep, shared


def _edge_line(coords: np.ndarray, step: np.ndarray, deep_edge: bool) -> Line:
    """Robust line through one edge of a band: per column its deepest (or shallowest) pixel's outer side."""
    xs = np.unique(coords[:, 0])
    order = np.lexsort((coords[:, 1], coords[:, 0]))
    coords = coords[order]
    starts = np.searchsorted(coords[:, 0], xs)
    ends = np.r_[starts[1:], len(coords)] - 1
    # the band's edge lies half a pixel beyond the last pixel centre inside it
    ys = coords[ends, 1] + 0.5 if deep_edge else coords[starts, 1] - 0.5
    # Theil–Sen takes all pairs of points: evenly spaced columns keep a wide image's fit fast and as robust
    keep = np.unique(np.linspace(0, len(xs) - 1, min(len(xs), MAX_EDGE_COLUMNS)).round().astype(int))
    slope, intercept, *_ = theilslopes(ys[keep] * step[1], xs[keep] * step[0])
    return Line(float(intercept), float(slope))


def _normal_distance(x: float | np.ndarray, deep: Line, superficial: Line) -> float | np.ndarray:
    """From ``L_d`` at lateral position(s) ``x`` along ``L_d``'s normal to ``L_s``."""
    normal = np.array([deep.direction[1], -deep.direction[0]])
    distance = np.abs(superficial.hit(np.array([x, deep.y(x)]), normal))  # one normal for every x
    return float(distance) if np.ndim(distance) == 0 else distance


def weighted_median(values: list[float], weights: list[float]) -> float:
    """The value at half the total weight (the lower one on a tie); NaN for no values."""
    if not values:
        return math.nan
    return float(np.quantile(values, 0.5, weights=weights, method="inverted_cdf"))


def _fascicles(
    fas: np.ndarray, superficial: Line, deep: Line, step: np.ndarray, qc: list[str]
) -> tuple[list[float], list[float], list[float], str, list[tuple[np.ndarray, np.ndarray]]]:
    """Per-fascicle pennation angles (deg), lengths and visible lengths of the plausible, merged pieces that
    descend the way most of the muscle's fascicles do, that way (``down-right`` or ``down-left``), and
    their lines (centre, direction)."""
    pieces = _piece_lines(fas, step)
    plausible = [
        p for p in pieces if ANGLE_RANGE_DEG[0] <= _angle_deg(p[1], deep.direction) <= ANGLE_RANGE_DEG[1]
    ]
    dropped = len(pieces) - len(plausible)
    if dropped:
        qc.append(f"{dropped} fascicle piece(s) at an implausible angle dropped")
    lines = _merge_collinear(plausible, step)
    if not lines:
        qc.append("no measurable fascicle")
        return [], [], [], "", []
    # which way the muscle's fascicles descend: the side most of the visible fascicle length takes
    descends_right = np.array([_descends_right(direction, deep.direction) for _, direction, _ in lines])
    visible = np.array([length for _, _, length in lines])
    right = float(visible[descends_right].sum()) >= float(visible[~descends_right].sum())
    kept = descends_right == right
    if not kept.all():
        qc.append(f"{int((~kept).sum())} fascicle(s) tilted against the muscle's fascicles dropped")
    geometry = [(centre, direction) for (centre, direction, _), keep in zip(lines, kept, strict=True) if keep]
    angles = [_angle_deg(direction, deep.direction) for _, direction in geometry]
    lengths = [float(abs(superficial.hit(c, d) - deep.hit(c, d))) for c, d in geometry]
    return angles, lengths, visible[kept].tolist(), "down-right" if right else "down-left", geometry


def _descends_right(direction: np.ndarray, deep: np.ndarray) -> bool:
    """Whether a line gets deeper (relative to the deep aponeurosis) towards the image's right (+x)."""
    forward = direction if direction[0] >= 0 else -direction
    return bool(deep[0] * forward[1] - deep[1] * forward[0] > 0)


def _angle_deg(u: np.ndarray, v: np.ndarray) -> float:
    """Angle between two undirected lines, 0–90°."""
    return math.degrees(math.acos(min(1.0, abs(float(np.dot(u, v))))))


def _fit(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Principal axis of a point cloud: centre and unit direction."""
    centre = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centre, full_matrices=False)
    return centre, vt[0]


def _piece_lines(fas: np.ndarray, step: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(centre, direction, points) in mm of each long, line-like component of the skeletonised mask.

    All components are fitted at once from their moments (a network's fascicle mask skeletonises into
    dozens of pieces; one SVD per piece cost more than the rest of the measures together).
    """
    pixel = float(np.sqrt(step.prod()))
    labels = label(skeletonize(fas), connectivity=2)
    xs, ys = np.nonzero(labels)
    if not len(xs):
        return []
    order = np.argsort(labels[xs, ys], kind="stable")
    points = np.stack([xs[order], ys[order]], axis=1) * step
    ids = labels[xs, ys][order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    counts = np.diff(np.r_[starts, len(ids)])
    centres = np.add.reduceat(points, starts) / counts[:, None]
    offsets = points - np.repeat(centres, counts, axis=0)
    # per piece: covariance (a b; b c), principal direction at angle ½·atan2(2b, a − c), spread across it
    a, b, c = (
        np.add.reduceat(offsets[:, i] * offsets[:, j], starts) / counts for i, j in ((0, 0), (0, 1), (1, 1))
    )
    theta = 0.5 * np.arctan2(2 * b, a - c)
    directions = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    across = np.sqrt(np.maximum((a + c) / 2 - np.hypot((a - c) / 2, b), 0.0))  # rms distance from the line
    along = (offsets * np.repeat(directions, counts, axis=0)).sum(axis=1)
    spans = np.maximum.reduceat(along, starts) - np.minimum.reduceat(along, starts)
    keep = (counts >= 2) & (spans >= MIN_PIECE_PX * pixel) & (across <= MAX_PIECE_RESIDUAL_PX * pixel)
    return [
        (centres[i], directions[i], points[starts[i] : starts[i] + counts[i]]) for i in np.flatnonzero(keep)
    ]


def _merge_collinear(
    pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray]], step: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Join fragments of one fascicle (same direction, on each other's line) and refit each group.

    Each line is (centre, direction, visible length), the last the extent of its points along the line.
    """
    offset = MERGE_OFFSET_PX * float(np.sqrt(step.prod()))
    min_cos = math.cos(math.radians(MERGE_ANGLE_DEG))
    groups: list[list[int]] = []
    leaders: list[int] = []  # each group's first piece, the one others are compared with
    centres = np.array([centre for centre, _, _ in pieces]).reshape(-1, 2)
    directions = np.array([direction for _, direction, _ in pieces]).reshape(-1, 2)
    for i in range(len(pieces)):
        c0, d0 = centres[leaders], directions[leaders]
        normal0, normal = (
            np.stack([-d0[:, 1], d0[:, 0]], axis=1),
            np.array([-directions[i, 1], directions[i, 0]]),
        )
        fits = (
            (np.abs(d0 @ directions[i]) >= min_cos)
            & (np.abs(((centres[i] - c0) * normal0).sum(axis=1)) <= offset)
            & (np.abs((c0 - centres[i]) @ normal) <= offset)
        )
        if fits.any():
            groups[int(np.argmax(fits))].append(i)
        else:
            groups.append([i])
            leaders.append(i)
    lines = []
    for group in groups:
        points = np.concatenate([pieces[i][2] for i in group])
        centre, direction = _fit(points)
        lines.append((centre, direction, float(np.ptp((points - centre) @ direction))))
    return lines
