"""Muscle architecture from a longitudinal image's masks: thickness, pennation angle, fascicle length.

Definitions (shared with the ``architecture2d`` phantoms; drawn in docs/CONVENTIONS.md): ``L_s`` is the deep
edge of the superficial aponeurosis, ``L_d`` the superficial edge of the deep one, both fitted as straight
lines ``y = a + b·x`` in mm (x lateral, y depth). Thickness is the distance from ``L_d`` to ``L_s`` along
``L_d``'s normal, at the image's lateral centre and averaged over the columns where both aponeuroses are
present; labs that measure straight down the image get ``thickness_vertical`` (at the centre), and both at
a place of the user's choosing (``thickness_at``, ``thickness_vertical_at``). At one place, each edge is the
line through the band's columns nearest to it (``LOCAL_SPAN`` of the width), so an aponeurosis that curves,
as a contracted muscle's does, is followed where it is measured (gastrocnemius lateralis of another lab,
vertical thickness at a tenth of the width against three observers: MAE 12.1 → 5.7 px, ICC 0.43 → 0.72).
A fascicle is a straight line fitted to an annotated piece; its pennation angle is its angle to ``L_d``
(``pennation_angle``) and to ``L_s`` (``pennation_angle_superficial``, TimTrack's and UltraTrack's
definition), and its length runs
between its intersections with ``L_d`` and ``L_s``, extrapolated beyond the image where needed. An image's
length is the median over its fascicles, each weighted by how much of it is visible, and its angle the upper
quartile of the same weighting: a network marks short speckle streaks as well as clear fascicles, and the
streaks are flatter than the fascicles annotators trace, so the distribution has a flat tail that pulls its
median down (23 DL_Track validation images: angles 3.7° flat on average with the plain median, 2.8°
weighted; on the held-out DL_Track test images bias −1.0° with the weighted median, +0.2° with the upper
quartile, MAE 1.82° → 1.76°; against other labs' observers, vastus lateralis −2.9° → −0.4°, gastrocnemius
−3.6° → −1.4°). Fascicles
may descend to either side of the image: the side most of the visible fascicle length takes is the
muscle's (``fascicle_direction``, so no orientation flag is needed), and pieces tilted the other way, which
no fascicle of this muscle is, are dropped.

The two aponeuroses are the bands that bound the layer the fascicles lie in: of the bands one above the other
with no band dividing them, the pair whose layer holds the most fascicle pixels (a subcutaneous septum or a
deeper muscle's aponeurosis is a band too). A band across part of the layer with the fascicles running the
same way on both sides divides nothing: the layer goes round its end (a vessel or septum inside one muscle;
vastus lateralis of another lab, two such bands had been measured as the deep aponeurosis, 52–55 % short).
Pieces of a broken band on one line are joined; a band spanning less than ``MIN_BAND_SPAN`` of the width is a
fragment, never an aponeurosis: without two bands that span enough, thickness stays empty with the reason. So
does it where the fascicles go on below the deepest band (``OPEN_LAYER``): that band only divides the layer,
and the deep aponeurosis was not found.

Masks come from a network, so every step tolerates what networks output: merged or missing aponeuroses,
thick, broken or noisy fascicle pieces, spurious blobs. What cannot be measured becomes NaN with a reason in
``qc``, never an exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from skimage.measure import label, regionprops
from skimage.morphology import skeletonize

from sonomuscle.errors import InputError
from sonomuscle.measures.spacing import checked_spacing

# plausible angle between a fascicle and the deep aponeurosis (degrees): wide enough that the fascicles of a
# strongly contracted muscle (up to 60°, give or take a piece's noise) are never cut off
ANGLE_RANGE_DEG = (2.0, 80.0)
# a fascicle piece must span this many pixels and stay this close (rms, pixels) to its line; pixels of a
# picture REFERENCE_PX wide (or deep), scaled with the picture's size: the network sees every picture at one
# size, so the same picture at another resolution must keep and merge the same pieces
REFERENCE_PX = 512
MIN_PIECE_PX = 8.0
MAX_PIECE_RESIDUAL_PX = 1.5
# fragments of one fascicle: directions within this angle and each centre this close to the other's line
MERGE_ANGLE_DEG = 2.0
MERGE_OFFSET_PX = 2.0
# the two aponeuroses must share this many columns to be measured against each other
MIN_EDGE_COLUMNS = 5
MAX_EDGE_COLUMNS = 160  # columns an edge line is fitted to
# a band narrower than this share of the picture's width is a fragment (annotated aponeuroses of the DL_Track
# images span 0.35–1.0 of the width, 1st percentile 0.41), and bands smaller than this many pixels are noise
MIN_BAND_SPAN = 0.25
MIN_BAND_PX = 20
# the quantile of the fascicles' length-weighted angles reported as the image's (see the module's description)
ANGLE_QUANTILE = 0.75
# a second layer holding more than this share of the chosen layer's fascicle pixels makes the pair uncertain
UNCERTAIN_PAIR = 0.5
# fascicles under the chosen deep band where no band lies below it, above this share of the layer's: the layer
# goes on below it, so the band is not its deep aponeurosis (none of 179 results within
# 10 % of three observers on two other-lab sets had any; the four partial bands taken for the deep
# aponeurosis had 0.40–0.81)
OPEN_LAYER = 0.25
PARALLEL_DEG = 10.0  # fascicle pieces below the deep band within this of the layer's run the layer's way
# thickness at one place follows each aponeurosis over the band columns nearest to it: this share of the width
LOCAL_SPAN = 0.2
# how the qc messages that make a number doubtful start (quality flags): an aponeurosis pair that another
# layer nearly matches, and thickness measured where an aponeurosis was not found
PAIR_UNCERTAIN = "aponeurosis pair uncertain"
EXTRAPOLATED = "thickness extrapolated"


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
    thickness_vertical: float = math.nan
    thickness_at: float = math.nan
    thickness_vertical_at: float = math.nan
    pennation_angle_superficial: float = math.nan
    # interquartile range of the fascicles' angles, weighted like the angle
    pennation_angle_spread: float = math.nan
    pennation_angles: list[float] = field(default_factory=list)
    pennation_angles_superficial: list[float] = field(default_factory=list)
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
                "thickness_vertical",
                "thickness_at",
                "thickness_vertical_at",
                "pennation_angle",
                "pennation_angle_superficial",
                "pennation_angle_spread",
                "fascicle_length",
                "fascicle_direction",
                "units",
            )
        }
        return {**row, "n_fascicles": self.n_fascicles, "qc": "; ".join(self.qc)}


@dataclass(frozen=True)
class LateralPosition:
    """Where across the picture a lab measures thickness: a fraction of the width or a pixel column."""

    value: float
    is_fraction: bool

    @classmethod
    def parse(cls, text: str | float) -> LateralPosition:
        """``0.2`` is a fifth of the width from the left edge; ``120`` or ``120px`` is pixel column 120."""
        spoken = str(text).strip().lower()
        try:
            value = float(spoken.removesuffix("px"))
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0 or (spoken.endswith("px") and value < 1):
            raise InputError(
                None,
                f"thickness position {text!r} is neither a fraction of the width (0–1) nor a column (e.g. 120px)",
            )
        return cls(value, is_fraction=value <= 1 and not spoken.endswith("px"))

    def column(self, picture: tuple[int, int]) -> float:
        """The pixel column (centre of pixel 0 is 0) in the file, for a picture spanning columns
        ``picture[0]`` to ``picture[1] - 1``; a column given in pixels counts from the picture's left edge."""
        first, last = picture[0], picture[1] - 1
        column = first + (self.value * (last - first) if self.is_fraction else self.value)
        if column > last:
            raise InputError(
                None, f"thickness position column {column:g} lies beyond the picture's last column {last}"
            )
        return column


def measure_architecture(
    aponeurosis: np.ndarray,
    fascicle: np.ndarray | None,
    spacing: tuple[float, float] | None,
    thickness_at: LateralPosition | None = None,
    picture: tuple[int, int] | None = None,
) -> ArchitectureResult:
    """Thickness, pennation angle and fascicle length from (X, Y) masks; no fascicle mask → thickness only.

    ``thickness_at``: where ``thickness_at`` and ``thickness_vertical_at`` are measured (else left empty);
    ``picture``: the columns ``[start, end)`` of the ultrasound picture in a screen capture (default: all),
    whose centre and width these places refer to.
    """
    step = checked_spacing(spacing, 2)
    apo = _checked_mask(aponeurosis, "aponeurosis")
    fas = None
    if fascicle is not None:
        fas = _checked_mask(fascicle, "fascicle")
        if fas.shape != apo.shape:
            raise InputError(None, f"fascicle mask shape {fas.shape} differs from aponeurosis {apo.shape}")
    qc: list[str] = []
    picture = (0, apo.shape[0]) if picture is None else picture
    edges = _aponeurosis_edges(apo, fas, qc)
    superficial = deep = None
    thickness = dict.fromkeys(("thickness", "thickness_mean", "thickness_vertical"), math.nan)
    thickness.update(thickness_at=math.nan, thickness_vertical_at=math.nan)
    if edges is not None:
        superficial, deep = (edge.line(step) for edge in edges)
        shared_columns = np.intersect1d(edges[0].columns, edges[1].columns) * step[0]
        span = LOCAL_SPAN * (picture[1] - picture[0])
        centre = _thickness_at(edges, (picture[0] + picture[1] - 1) / 2, span, step, qc)
        thickness.update(
            thickness=centre[0],
            thickness_mean=float(np.mean(_normal_distance(shared_columns, deep, superficial))),
            thickness_vertical=centre[1],
        )
        if thickness_at is not None:
            at = _thickness_at(edges, thickness_at.column(picture), span, step, qc)
            thickness.update(thickness_at=at[0], thickness_vertical_at=at[1])
    angles: list[float] = []
    angles_superficial: list[float] = []
    lengths: list[float] = []
    visible: list[float] = []
    direction = ""
    lines: list[tuple[np.ndarray, np.ndarray]] = []
    if fas is not None:
        if superficial is None or deep is None:
            qc.append("fascicles not measured without both aponeuroses")
        else:
            angles, lengths, visible, direction, lines = _fascicles(fas, superficial, deep, step, qc)
            angles_superficial = [_angle_deg(d, superficial.direction) for _, d in lines]
    return ArchitectureResult(
        **thickness,
        pennation_angle=weighted_quantile(angles, visible, ANGLE_QUANTILE),
        pennation_angle_superficial=weighted_quantile(angles_superficial, visible, ANGLE_QUANTILE),
        pennation_angle_spread=weighted_quantile(angles, visible, 0.75)
        - weighted_quantile(angles, visible, 0.25),
        fascicle_length=weighted_median(lengths, visible),
        pennation_angles=angles,
        pennation_angles_superficial=angles_superficial,
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


@dataclass
class Band:
    """A bright band of the aponeurosis mask: one component, or collinear pieces of one broken band."""

    coords: np.ndarray  # (n, 2) pixel indices (x, y)

    @property
    def area(self) -> int:
        return len(self.coords)

    @property
    def span(self) -> int:
        """How many columns the band reaches across, first to last."""
        return int(np.ptp(self.coords[:, 0])) + 1

    def depth_at(self, columns: np.ndarray) -> float:
        """Median depth (row) over those of ``columns`` the band covers."""
        inside = np.isin(self.coords[:, 0], columns)
        return float(np.median(self.coords[inside, 1])) if inside.any() else math.nan

    def continues(self, other: Band, tolerance: float) -> bool:
        """Whether ``other`` lies beside this band (sharing few columns) on its extrapolated centre line."""
        shared = np.intersect1d(self.coords[:, 0], other.coords[:, 0])
        if len(shared) > 0.2 * min(self.span, other.span):
            return False
        slope, intercept = np.polyfit(self.coords[:, 0], self.coords[:, 1], 1)
        return bool(
            abs(np.median(other.coords[:, 1] - (intercept + slope * other.coords[:, 0]))) <= tolerance
        )


def _bands(apo: np.ndarray) -> list[Band]:
    """The mask's bands, largest first: components of ``MIN_BAND_PX`` pixels or more, with pieces that
    continue a larger band across a gap joined to it (a network breaks a faint aponeurosis)."""
    components = sorted(
        (Band(r.coords) for r in regionprops(label(apo, connectivity=2)) if r.area >= MIN_BAND_PX),
        key=lambda b: b.area,
        reverse=True,
    )
    tolerance = max(3.0, 0.02 * apo.shape[1])
    bands: list[Band] = []
    for piece in components:
        host = next((band for band in bands if band.continues(piece, tolerance)), None)
        if host is None:
            bands.append(piece)
        else:
            host.coords = np.concatenate([host.coords, piece.coords])
    return bands


def _aponeurosis_edges(apo: np.ndarray, fas: np.ndarray | None, qc: list[str]) -> tuple[Edge, Edge] | None:
    """The deep edge of the superficial aponeurosis and the superficial edge of the deep one (None with the
    reason in ``qc`` where unusable).

    Bands spanning less than ``MIN_BAND_SPAN`` of the width are fragments and take no part; the pair is
    chosen by :func:`_layer_pair`.
    """
    bands = _bands(apo)
    wide = [band for band in bands if band.span >= MIN_BAND_SPAN * apo.shape[0]]
    if len(wide) < 2:
        fragments = len(bands) - len(wide)
        qc.append(
            f"expected two aponeuroses, found {len(wide)} band(s) across {MIN_BAND_SPAN:.0%} of the width or "
            f"more (missing, merged or faint)" + (f" and {fragments} fragment(s)" if fragments else "")
        )
        return None
    pair = _layer_pair(wide, fas, qc)
    if pair is None:
        qc.append("no two aponeurosis bands lie one above the other")
        return None
    below, between = _open_below(fas, pair, wide)
    if below > OPEN_LAYER * between:
        qc.append(
            "deep aponeurosis not found: the fascicle layer goes on below the deepest band "
            f"({below} fascicle pixels below it, {between} above it)"
        )
        return None
    return Edge.of(pair[0], deep_edge=True), Edge.of(pair[1], deep_edge=False)


def _layer_pair(bands: list[Band], fas: np.ndarray | None, qc: list[str]) -> tuple[Band, Band] | None:
    """The (superficial, deep) bands around the layer the fascicles lie in; None if no band lies above another.

    Candidates are pairs sharing ``MIN_EDGE_COLUMNS`` columns, one above the other, that no third band
    divides (:func:`_divides`). The layer holding the most fascicle pixels wins; without fascicles (or where no
    layer holds any) the pair with the most aponeurosis pixels. Where another layer holds more than
    ``UNCERTAIN_PAIR`` of the winner's fascicle pixels, the choice is uncertain: ``qc`` says so.
    """
    pairs = []
    for a in bands:
        for b in bands:
            shared = np.intersect1d(a.coords[:, 0], b.coords[:, 0])
            if len(shared) < MIN_EDGE_COLUMNS or a.depth_at(shared) >= b.depth_at(shared):
                continue
            if any(_divides(c, a, b, shared, fas) for c in bands if c is not a and c is not b):
                continue
            pairs.append((_fascicle_pixels(fas, a, b), a.area + b.area, a, b))
    if not pairs:
        return None
    pairs.sort(key=lambda p: p[:2], reverse=True)
    if len(pairs) > 1 and pairs[0][0] > 0 and pairs[1][0] > UNCERTAIN_PAIR * pairs[0][0]:
        qc.append(
            f"{PAIR_UNCERTAIN}: another layer holds {pairs[1][0] / pairs[0][0]:.0%} as many fascicle "
            "pixels as the one measured"
        )
    return pairs[0][2], pairs[0][3]


def _divides(band: Band, upper: Band, lower: Band, shared: np.ndarray, fas: np.ndarray | None) -> bool:
    """Whether ``band`` divides the layer between ``upper`` and ``lower`` in two: it lies between them over half
    or more of their ``shared`` columns, unless it leaves a quarter of them open and the fascicles on its two
    sides run the same way (within ``PARALLEL_DEG``), so the layer goes round its end: a vessel, a septum or a
    bright streak inside one muscle, not the boundary of two."""
    if not upper.depth_at(shared) < band.depth_at(shared) < lower.depth_at(shared):
        return False
    covered = float(np.isin(shared, band.coords[:, 0]).mean())
    if covered < 0.5:
        return False
    if covered >= 0.75 or fas is None:
        return True
    above, below = (_way(fas & _between(fas.shape, *pair)) for pair in ((upper, band), (band, lower)))
    return not abs(above - below) <= PARALLEL_DEG  # no fascicles on a side (NaN): it divides


def _open_below(fas: np.ndarray | None, pair: tuple[Band, Band], bands: list[Band]) -> tuple[int, int]:
    """Fascicle pixels under the pair's deep band where no band lies below it, in pieces running the layer's
    way (within ``PARALLEL_DEG`` of :func:`_way` of those between the pair; all where none are between), and
    between the pair. Fascicles of a deeper muscle run another way and do not count; a layer another band
    closes is a candidate of :func:`_layer_pair` instead."""
    if fas is None:
        return 0, 0
    upper, lower = pair
    layer = fas & _between(fas.shape, upper, lower)
    deepest = _edge_rows(lower, fas.shape[0], deepest=True, missing=fas.shape[1])
    for band in bands:  # columns where a band lies under the deep one are closed
        if band is not upper and band is not lower:
            under_deep = band.coords[:, 1] > deepest[band.coords[:, 0]]
            deepest[band.coords[under_deep, 0]] = fas.shape[1]
    under = fas & (np.arange(fas.shape[1]) > deepest[:, None])
    if not under.any():  # the common case: nothing to weigh
        return 0, int(layer.sum())
    pieces = _pieces(under)
    way = _way(layer)
    if not math.isnan(way):
        pieces = [(angle, area) for angle, area in pieces if abs(angle - way) <= PARALLEL_DEG]
    return sum(area for _, area in pieces), int(layer.sum())


def _fascicle_pixels(fas: np.ndarray | None, upper: Band, lower: Band) -> int:
    """Fascicle-mask pixels between two bands, over the columns they share."""
    return 0 if fas is None else int((fas & _between(fas.shape, upper, lower)).sum())


def _between(shape: tuple[int, ...], upper: Band, lower: Band) -> np.ndarray:
    """The pixels under ``upper`` and over ``lower``, in the columns both cover."""
    top = _edge_rows(upper, shape[0], deepest=True, missing=shape[1])
    bottom = _edge_rows(lower, shape[0], deepest=False, missing=-1)
    rows = np.arange(shape[1])
    return (rows > top[:, None]) & (rows < bottom[:, None])


def _edge_rows(band: Band, width: int, deepest: bool, missing: int) -> np.ndarray:
    """Per column, the band's deepest (or shallowest) row; ``missing`` in the columns it does not cover."""
    rows = np.full(width, -1 if deepest else np.iinfo(np.int64).max, dtype=np.int64)
    (np.maximum if deepest else np.minimum).at(rows, band.coords[:, 0], band.coords[:, 1])
    covered = np.zeros(width, dtype=bool)
    covered[band.coords[:, 0]] = True
    return np.where(covered, rows, missing)


def _way(fas: np.ndarray) -> float:
    """The way a mask's fascicles run: the median orientation (degrees) of its pieces weighted by their
    pixels; NaN without any."""
    pieces = _pieces(fas)
    return weighted_median([angle for angle, _ in pieces], [area for _, area in pieces])


def _pieces(mask: np.ndarray) -> list[tuple[float, int]]:
    """(orientation in degrees, pixels) of each connected piece of ``mask``: ``regionprops``' orientation,
    from :func:`_moments` of all pieces at once (region by region, a fragmented mask took 15 ms)."""
    moments = _moments(label(mask, connectivity=2), np.ones(2))
    if moments is None:
        return []
    a, b, c = moments.covariance
    # as skimage: half the angle of the covariance's principal axis, ±45° where its diagonal is equal
    orientation = np.where(a == c, np.where(b > 0, math.pi / 4, -math.pi / 4), 0.5 * np.arctan2(2 * b, a - c))
    return list(zip(np.degrees(orientation).tolist(), moments.counts.tolist(), strict=True))


@dataclass(frozen=True)
class Edge:
    """One edge of a band, per column (pixels): its deepest (or shallowest) pixel's outer side."""

    columns: np.ndarray
    rows: np.ndarray

    @classmethod
    def of(cls, band: Band, deep_edge: bool) -> Edge:
        coords = band.coords[np.lexsort((band.coords[:, 1], band.coords[:, 0]))]
        columns = np.unique(coords[:, 0])
        starts = np.searchsorted(coords[:, 0], columns)
        ends = np.r_[starts[1:], len(coords)] - 1
        # the band's edge lies half a pixel beyond the last pixel centre inside it
        rows = coords[ends, 1] + 0.5 if deep_edge else coords[starts, 1] - 0.5
        return cls(columns, rows)

    def line(self, step: np.ndarray, near: float | None = None, span: float = math.inf) -> Line:
        """Robust line (mm) through the edge, or through its ``span`` columns nearest column ``near``."""
        keep = np.arange(len(self.columns))
        if near is not None and span < len(keep):
            keep = np.sort(np.argsort(np.abs(self.columns - near), kind="stable")[: max(int(span), 2)])
        # Theil–Sen takes all pairs of points: evenly spaced columns keep a wide image's fit fast and as robust
        keep = keep[
            np.unique(np.linspace(0, len(keep) - 1, min(len(keep), MAX_EDGE_COLUMNS)).round().astype(int))
        ]
        return _theil_sen(self.columns[keep] * step[0], self.rows[keep] * step[1])


def _theil_sen(x: np.ndarray, y: np.ndarray) -> Line:
    """Theil–Sen line: the median of the pairwise slopes, through the medians (scipy's ``theilslopes`` with
    its default ``method="joint"``, less the confidence interval it always computes, which took three
    quarters of its time; up to six fits per picture)."""
    first, second = np.triu_indices(len(x), 1)
    slope = float(np.median((y[second] - y[first]) / (x[second] - x[first])))
    return Line(float(np.median(y) - slope * np.median(x)), slope)


def _thickness_at(
    edges: tuple[Edge, Edge], column: float, span: float, step: np.ndarray, qc: list[str]
) -> tuple[float, float]:
    """Thickness along the deep edge's normal and straight down, at ``column``, each edge followed over its
    ``span`` columns nearest to it. Where an aponeurosis was not found within half the span of ``column``,
    its line is carried there from afar: ``qc`` says so (``EXTRAPOLATED``)."""
    for name, edge in zip(("superficial", "deep"), edges, strict=True):
        gap = float(np.min(np.abs(edge.columns - column)))
        if gap > span / 2:
            qc.append(
                f"{EXTRAPOLATED} at column {column:.0f}: the {name} aponeurosis was found {gap:.0f} px away"
            )
    superficial, deep = (edge.line(step, near=column, span=span) for edge in edges)
    x = column * step[0]
    return _normal_distance(x, deep, superficial), float(deep.y(x) - superficial.y(x))


def _normal_distance(x: float | np.ndarray, deep: Line, superficial: Line) -> float | np.ndarray:
    """From ``L_d`` at lateral position(s) ``x`` along ``L_d``'s normal to ``L_s``."""
    normal = np.array([deep.direction[1], -deep.direction[0]])
    distance = np.abs(superficial.hit(np.array([x, deep.y(x)]), normal))  # one normal for every x
    return float(distance) if np.ndim(distance) == 0 else distance


def weighted_median(values: list[float], weights: list[float]) -> float:
    """The value at half the total weight (the lower one on a tie); NaN for no values."""
    return weighted_quantile(values, weights, 0.5)


def weighted_quantile(values: list[float], weights: list[float], q: float) -> float:
    """The value at ``q`` of the total weight (the lower one on a tie); NaN for no values."""
    if not values:
        return math.nan
    return float(np.quantile(values, q, weights=weights, method="inverted_cdf"))


def _fascicles(
    fas: np.ndarray, superficial: Line, deep: Line, step: np.ndarray, qc: list[str]
) -> tuple[list[float], list[float], list[float], str, list[tuple[np.ndarray, np.ndarray]]]:
    """Per-fascicle pennation angles (deg), lengths and visible lengths of the plausible, merged pieces that
    descend the way most of the muscle's fascicles do, that way (``down-right`` or ``down-left``), and
    their lines (centre, direction)."""
    pixel = float(np.sqrt(step.prod())) * max(fas.shape) / REFERENCE_PX  # mm of a reference pixel
    pieces = _piece_lines(fas, step, pixel)
    plausible = [
        p for p in pieces if ANGLE_RANGE_DEG[0] <= _angle_deg(p[1], deep.direction) <= ANGLE_RANGE_DEG[1]
    ]
    dropped = len(pieces) - len(plausible)
    if dropped:
        qc.append(f"{dropped} fascicle piece(s) at an implausible angle dropped")
    lines = _merge_collinear(plausible, pixel)
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


def _piece_lines(
    fas: np.ndarray, step: np.ndarray, pixel: float
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(centre, direction, points) in mm of each long, line-like component of the skeletonised mask;
    ``pixel``: the mm of one reference pixel (``REFERENCE_PX``).

    All components are fitted at once from their moments (a network's fascicle mask skeletonises into
    dozens of pieces; one SVD per piece cost more than the rest of the measures together).
    """
    moments = _moments(label(_symmetric_skeleton(fas), connectivity=2), step)
    if moments is None:
        return []
    points, starts, counts, centres, offsets, (a, b, c) = moments
    # per piece: principal direction at angle ½·atan2(2b, a − c) of the covariance (a b; b c), spread across it
    theta = 0.5 * np.arctan2(2 * b, a - c)
    directions = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    across = np.sqrt(np.maximum((a + c) / 2 - np.hypot((a - c) / 2, b), 0.0))  # rms distance from the line
    along = (offsets * np.repeat(directions, counts, axis=0)).sum(axis=1)
    spans = np.maximum.reduceat(along, starts) - np.minimum.reduceat(along, starts)
    keep = (counts >= 2) & (spans >= MIN_PIECE_PX * pixel) & (across <= MAX_PIECE_RESIDUAL_PX * pixel)
    # longest first: merging is greedy, and an order by size (not by raster position) is the same for the
    # picture and its mirror image
    kept = sorted(np.flatnonzero(keep), key=lambda i: (-spans[i], -counts[i]))
    return [(centres[i], directions[i], points[starts[i] : starts[i] + counts[i]]) for i in kept]


class _Moments(NamedTuple):
    """The pixels of a labelled mask's components, one component after another, and their moments."""

    points: np.ndarray  # (n, 2), scaled by the pixel size
    starts: np.ndarray  # where each component's points start
    counts: np.ndarray
    centres: np.ndarray
    offsets: np.ndarray  # each point from its component's centre
    covariance: tuple[np.ndarray, np.ndarray, np.ndarray]  # (a b; b c) per component


def _moments(labels: np.ndarray, step: np.ndarray) -> _Moments | None:
    """:class:`_Moments` of every labelled component at once; None without any."""
    xs, ys = np.nonzero(labels)
    if not len(xs):
        return None
    ids = labels[xs, ys]
    order = np.argsort(ids, kind="stable")
    points = np.stack([xs[order], ys[order]], axis=1) * step
    ids = ids[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    counts = np.diff(np.r_[starts, len(ids)])
    centres = np.add.reduceat(points, starts) / counts[:, None]
    offsets = points - np.repeat(centres, counts, axis=0)
    a, b, c = (
        np.add.reduceat(offsets[:, i] * offsets[:, j], starts) / counts for i, j in ((0, 0), (0, 1), (1, 1))
    )
    return _Moments(points, starts, counts, centres, offsets, (a, b, c))


def _symmetric_skeleton(mask: np.ndarray) -> np.ndarray:
    """The union of the mask's thinning and its mirror image's, thinned within the mask's bounding box (half
    the time of the whole picture): skimage's thinning is not mirror-symmetric (a picture and its mirror
    image kept different pieces: angles up to 1.4° apart); the union is, by construction."""
    skeleton = np.zeros_like(mask)
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows):
        box = np.s_[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
        skeleton[box] = skeletonize(mask[box]) | skeletonize(mask[box][::-1])[::-1]
    return skeleton


def _merge_collinear(
    pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray]], pixel: float
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Join fragments of one fascicle (same direction, on each other's line) and refit each group.

    Each line is (centre, direction, visible length), the last the extent of its points along the line.
    """
    offset = MERGE_OFFSET_PX * pixel
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
