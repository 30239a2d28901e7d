"""Muscle architecture on masks drawn from exact lines, where thickness, angle and length are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.draw import disk, line
from skimage.morphology import dilation
from skimage.morphology import disk as disk_footprint

from sonomuscle.errors import InputError
from sonomuscle.measures.architecture import LateralPosition, measure_architecture

SHAPE = (480, 300)  # (X, Y) pixels


def _bands(shape, step, superficial, deep, width_mm=1.0):
    """Aponeurosis mask: pixel centres within ``width_mm`` above L_s and below L_d (lines as (a, b) in mm)."""
    x, y = (np.indices(shape).astype(float).T * step).T
    ls = superficial[0] + superficial[1] * x
    ld = deep[0] + deep[1] * x
    return (((y <= ls) & (y > ls - width_mm)) | ((y >= ld) & (y < ld + width_mm))).astype(np.uint8)


def _hit(line_ab, point, direction):
    a, b = line_ab
    return (a + b * point[0] - point[1]) / (direction[1] - b * direction[0])


def _fascicle(deep, superficial, x0, theta_deg, side):
    """Start on L_d at x0, unit direction rising toward L_s at angle theta to L_d; true length between them."""
    phi = math.atan(deep[1])
    angle = phi - math.radians(theta_deg) if side > 0 else math.pi + phi + math.radians(theta_deg)
    direction = np.array([math.cos(angle), math.sin(angle)])
    start = np.array([x0, deep[0] + deep[1] * x0])
    return start, direction, _hit(superficial, start, direction)


def _draw(mask, step, start, direction, t0, t1):
    """Rasterise the segment t0..t1 (mm along the line), which must lie inside the image."""
    p0, p1 = ((start + t * direction) / step for t in (t0, t1))
    rr, cc = line(*np.round(p0).astype(int), *np.round(p1).astype(int))
    assert rr.min() >= 0 and rr.max() < mask.shape[0] and cc.min() >= 0 and cc.max() < mask.shape[1]
    mask[rr, cc] = 1


def _truth_thickness(deep, superficial, x):
    start = np.array([x, deep[0] + deep[1] * x])
    normal = np.array([deep[1], -1.0]) / math.hypot(1.0, deep[1])
    return abs(_hit(superficial, start, normal))


def _case(step, superficial, deep, theta, side, pieces=((0.35, 0.65),), centres=(18.0, 24.0, 30.0)):
    """Masks plus truth; each fascicle's midpoint lies at one of ``centres`` (lateral, mm), and its pieces
    are given as fractions of its true length from L_d."""
    apo = _bands(SHAPE, step, superficial, deep)
    fas = np.zeros(SHAPE, np.uint8)
    lengths = []
    for centre in centres:
        x0 = centre
        for _ in range(5):  # put the midpoint at ``centre``; the length changes slowly with x0
            start, direction, length = _fascicle(deep, superficial, x0, theta, side)
            x0 += centre - (start + length / 2 * direction)[0]
        lengths.append(length)
        for f0, f1 in pieces:
            _draw(fas, step, start, direction, f0 * length, f1 * length)
    middle = (SHAPE[0] - 1) / 2 * step[0]
    return (
        apo,
        fas,
        {"thickness": _truth_thickness(deep, superficial, middle), "length": float(np.median(lengths))},
    )


def _check(result, truth, theta, units="mm"):
    assert result.units == units
    assert result.thickness == pytest.approx(truth["thickness"], abs=0.3)
    assert result.pennation_angle == pytest.approx(theta, abs=1.0)
    assert result.fascicle_length == pytest.approx(truth["length"], rel=0.03)


@pytest.mark.parametrize("side", [1, -1])
@pytest.mark.parametrize("theta", [15.0, 28.0])
def test_clean_lines_both_directions(side, theta):
    step = np.array([0.1, 0.1])
    superficial, deep = (4.0, 0.03), (19.0, -0.02)  # converging, tilted
    apo, fas, truth = _case(step, superficial, deep, theta, side, centres=(16.0, 24.0, 32.0))
    result = measure_architecture(apo, fas, (0.1, 0.1))
    _check(result, truth, theta)
    assert result.n_fascicles == 3
    assert result.fascicle_direction == ("down-left" if side > 0 else "down-right")  # found, not told
    assert result.thickness_mean == pytest.approx(
        np.mean([_truth_thickness(deep, superficial, x) for x in np.arange(SHAPE[0]) * 0.1]), abs=0.3
    )
    assert result.qc == []


def test_anisotropic_spacing_and_fascicle_leaving_the_image():
    step = np.array([0.12, 0.08])  # 57.6 × 24 mm
    superficial, deep = (3.0, -0.02), (18.0, 0.04)
    # fascicles start near the right edge and leave it: their length is extrapolated
    apo, fas, truth = _case(
        step, superficial, deep, 15.0, 1, pieces=((0.42, 0.58),), centres=(40.0, 45.0, 50.0)
    )
    _check(measure_architecture(apo, fas, tuple(step)), truth, 15.0)


def test_broken_noisy_thick_pieces_and_blobs():
    step = np.array([0.1, 0.1])
    superficial, deep = (3.5, 0.0), (20.0, 0.01)
    apo, fas, truth = _case(
        step,
        superficial,
        deep,
        20.0,
        -1,
        pieces=((0.2, 0.35), (0.45, 0.6), (0.7, 0.8)),
        centres=(16.0, 24.0, 32.0),
    )
    fas = dilation(fas, disk_footprint(1))  # a network's thick strokes
    rng = np.random.default_rng(0)
    fas[rng.random(SHAPE) < 0.002] = 1  # speckle
    fas[disk((100, 150), 6)] = 1  # a round blob
    _draw(fas, step, np.array([5.0, 10.0]), np.array([1.0, 0.0]), 0.0, 6.0)  # parallel to L_d: implausible
    apo[disk((240, 120), 5)] = 1  # a spurious aponeurosis blob between the bands
    result = measure_architecture(apo, fas, tuple(step))
    _check(result, truth, 20.0)
    assert result.n_fascicles == 3  # fragments of one fascicle merged into one line
    assert any("implausible" in message for message in result.qc)


def _flat_case(theta, pieces, centres):
    """Parallel, level aponeuroses 16.5 mm apart and fascicles at ``theta`` descending to the left."""
    step = np.array([0.1, 0.1])
    superficial, deep = (3.5, 0.0), (20.0, 0.0)
    return step, superficial, deep, *_case(step, superficial, deep, theta, 1, pieces=pieces, centres=centres)


def _measure_with(apo, fas, extra, step):
    """The measures of ``fas`` with ``extra`` pieces, drawn apart from it so that no piece joins another."""
    assert not (dilation(fas, disk_footprint(3)) & extra).any()
    return measure_architecture(apo, fas | extra, tuple(step))


def test_short_streaks_do_not_outvote_long_fascicles():
    """Networks also mark short speckle streaks, flatter than fascicles: the median weighs what is visible."""
    step, _, _, apo, fas, truth = _flat_case(25.0, ((0.6, 0.95),), (10.0, 20.0, 30.0))
    streaks = np.zeros(SHAPE, np.uint8)
    streak = np.array([math.cos(math.radians(-8.0)), math.sin(math.radians(-8.0))])
    for x in (6.0, 12.0, 18.0, 24.0, 30.0, 36.0, 42.0):
        _draw(streaks, step, np.array([x, 18.0]), streak, 0.0, 3.0)
    result = _measure_with(apo, fas, streaks, step)
    assert result.n_fascicles == 10
    assert sorted(result.pennation_angles)[6] == pytest.approx(8.0, abs=1.5)  # the plain median: a streak
    _check(result, truth, 25.0)


def test_pieces_tilted_against_the_muscles_fascicles_are_dropped():
    step, superficial, deep, apo, fas, truth = _flat_case(22.0, ((0.3, 0.7),), (16.0, 24.0, 32.0))
    against = np.zeros(SHAPE, np.uint8)
    for x0, (f0, f1) in ((12.0, (0.3, 0.6)), (46.0, (0.05, 0.35))):  # shorter pieces descending the other way
        start, direction, length = _fascicle(deep, superficial, x0, 40.0, -1)
        _draw(against, step, start, direction, f0 * length, f1 * length)
    result = _measure_with(apo, fas, against, step)
    assert result.fascicle_direction == "down-left" and result.n_fascicles == 3
    assert "2 fascicle(s) tilted against the muscle's fascicles dropped" in result.qc
    _check(result, truth, 22.0)


def test_without_spacing_reports_pixels():
    step = np.array([1.0, 1.0])
    superficial, deep = (40.0, 0.02), (200.0, -0.03)
    apo, fas, truth = _case(step, superficial, deep, 18.0, 1, centres=(170.0, 240.0, 310.0))
    _check(measure_architecture(apo, fas, None), truth, 18.0, units="px")


def test_thickness_alone_and_unmeasurable_cases():
    step = np.array([0.1, 0.1])
    apo, _, _ = _case(step, (4.0, 0.0), (16.0, 0.0), 20.0, 1)
    alone = measure_architecture(apo, None, (0.1, 0.1))
    assert alone.thickness == pytest.approx(12.0, abs=0.3)
    assert math.isnan(alone.pennation_angle) and alone.n_fascicles == 0
    merged = apo.copy()
    merged[200:210, :] = 1  # the two bands joined into one component
    result = measure_architecture(merged, np.zeros(SHAPE, np.uint8), (0.1, 0.1))
    assert math.isnan(result.thickness) and math.isnan(result.fascicle_length)
    assert result.qc and "found 1 band" in result.qc[0]
    assert set(result.as_row()) >= {
        "thickness",
        "thickness_mean",
        "pennation_angle",
        "fascicle_length",
        "units",
    }


def test_each_definition_against_exact_lines():
    """Vertical thickness at the centre and at a chosen place, and the angle to each aponeurosis."""
    step = np.array([0.1, 0.1])
    superficial, deep = (4.0, 0.05), (22.0, -0.04)  # converging by about 5.1°
    theta = 25.0
    apo, fas, truth = _case(step, superficial, deep, theta, 1, centres=(16.0, 24.0, 32.0))
    result = measure_architecture(apo, fas, tuple(step), LateralPosition.parse("0.1"))
    x_at = 0.1 * (SHAPE[0] - 1) * 0.1
    centre = (SHAPE[0] - 1) / 2 * 0.1

    def vertical(x):
        return (deep[0] + deep[1] * x) - (superficial[0] + superficial[1] * x)

    assert result.thickness == pytest.approx(truth["thickness"], abs=0.3)
    assert result.thickness_vertical == pytest.approx(vertical(centre), abs=0.3)
    assert result.thickness_vertical_at == pytest.approx(vertical(x_at), abs=0.3)
    assert result.thickness_at == pytest.approx(_truth_thickness(deep, superficial, x_at), abs=0.3)
    between = math.degrees(math.atan(superficial[1]) - math.atan(deep[1]))
    # fascicles descend to the left: against L_s they are steeper by the aponeuroses' convergence here
    assert result.pennation_angle == pytest.approx(theta, abs=1.0)
    assert result.pennation_angle_superficial == pytest.approx(theta + between, abs=1.0)
    assert result.pennation_angle_spread < 1.0  # parallel fascicles
    column = measure_architecture(apo, fas, tuple(step), LateralPosition.parse("48px"))
    assert column.thickness_vertical_at == pytest.approx(vertical(4.8), abs=0.3)
    # a picture in columns 100-379 of a screen capture: its centre and its columns are the places meant
    inset = measure_architecture(apo, fas, tuple(step), LateralPosition.parse("48px"), picture=(100, 380))
    assert inset.thickness_vertical_at == pytest.approx(vertical(14.8), abs=0.3)
    assert inset.thickness_vertical == pytest.approx(vertical(23.95), abs=0.3)


def test_thickness_at_a_place_follows_a_curved_aponeurosis():
    """A contracted muscle's deep aponeurosis bends up toward one end: thickness at a place is the gap
    there, not the gap between straight lines fitted across the width (2 mm off here)."""
    step = np.array([0.1, 0.1])
    x, y = (np.indices(SHAPE).astype(float).T * step).T

    def deep(at):
        return 24.0 - 0.02 * np.maximum(24.0 - at, 0.0) ** 2  # flat on the right half, 12.5 mm at the left

    apo = (((y <= 4.0) & (y > 3.0)) | ((y >= deep(x)) & (y < deep(x) + 1.0))).astype(np.uint8)
    result = measure_architecture(apo, None, tuple(step), LateralPosition.parse("0.1"))
    x_at = 0.1 * (SHAPE[0] - 1) * 0.1
    assert result.thickness_vertical_at == pytest.approx(deep(x_at) - 4.0, abs=0.5)
    assert result.thickness_vertical == pytest.approx(deep(23.95) - 4.0, abs=0.5)
    straight = np.polyfit(x[:, 0], deep(x[:, 0]), 1)
    assert abs(np.polyval(straight, x_at) - deep(x_at)) > 1.5  # what a straight line would have given


def test_thickness_where_an_aponeurosis_was_not_found_is_noted():
    """The deep aponeurosis found over the right half only: at the centre it is there, at a tenth of the
    width its line is carried 19 mm from where it was seen, and qc says so."""
    step = np.array([0.1, 0.1])
    apo, fas, truth = _case(step, (4.0, 0.0), (20.0, 0.0), 20.0, 1, centres=(16.0, 24.0, 32.0))
    apo[:240, 150:] = 0
    result = measure_architecture(apo, fas, tuple(step), LateralPosition.parse("0.1"))
    assert result.thickness_vertical_at == pytest.approx(truth["thickness"], abs=0.3)
    assert [m for m in result.qc if m.startswith("thickness extrapolated")] == [
        "thickness extrapolated at column 48: the deep aponeurosis was found 192 px away"
    ]


@pytest.mark.parametrize("text", ["-0.1", "abc", "0.5px", "nan"])
def test_bad_thickness_position_is_one_line(text):
    with pytest.raises(InputError, match="thickness position"):
        LateralPosition.parse(text)
    with pytest.raises(InputError, match="beyond"):
        LateralPosition.parse("900px").column((0, SHAPE[0]))


def test_aponeuroses_bound_the_fascicle_layer():
    """A subcutaneous septum above the muscle and a deeper muscle's aponeurosis below it are bands too: the
    pair chosen is the one around the fascicles, whichever bands are largest."""
    step = np.array([0.1, 0.1])
    superficial, deep = (9.0, 0.0), (22.0, 0.0)
    apo, fas, truth = _case(step, superficial, deep, 20.0, 1, centres=(16.0, 24.0, 32.0))
    apo[:, 20:45] = 1  # a thick septum at 2.0–4.5 mm, larger than either aponeurosis
    apo[:, 275:298] = 1  # a deeper band at 27.5–29.8 mm
    result = measure_architecture(apo, fas, tuple(step))
    assert result.thickness == pytest.approx(truth["thickness"], abs=0.3)
    assert result.pennation_angle == pytest.approx(20.0, abs=1.0)


def test_a_fragment_is_never_taken_for_an_aponeurosis():
    """A deep aponeurosis the network found only in pieces too short to trust: no thickness, and why."""
    step = np.array([0.1, 0.1])
    apo, fas, _ = _case(step, (4.0, 0.0), (20.0, 0.0), 20.0, 1, centres=(16.0, 24.0, 32.0))
    apo[:, 195:] = 0  # the deep band gone ...
    apo[200:260, 120:130] = 1  # ... but for a short bright piece higher up (60 of 480 columns)
    result = measure_architecture(apo, fas, tuple(step))
    assert math.isnan(result.thickness) and math.isnan(result.pennation_angle)
    assert "fragment" in result.qc[0]


def test_a_band_the_fascicles_go_on_below_is_not_the_deep_aponeurosis():
    """A band across half the width in the middle of the muscle, the deep aponeurosis not found: the layer
    goes on below the band, so thickness stays empty with the reason; with the deep aponeurosis there, the
    band is another layer's boundary and the reason is not given."""
    step = np.array([0.1, 0.1])
    apo, fas, _ = _case(
        step, (4.0, 0.0), (20.0, 0.0), 20.0, 1, pieces=((0.15, 0.85),), centres=(20.0, 24.0, 28.0)
    )
    apo[:240, 100:110] = 1  # a band at 10 mm across half the width
    closed = measure_architecture(apo, fas, tuple(step))
    apo[:, 195:] = 0  # the deep aponeurosis gone
    result = measure_architecture(apo, fas, tuple(step))
    assert math.isnan(result.thickness) and math.isnan(result.pennation_angle)
    assert "deep aponeurosis not found: the fascicle layer goes on below the deepest band" in result.qc[0]
    assert not any("goes on below" in message for message in closed.qc)


def test_a_deeper_muscle_below_the_deep_aponeurosis_is_not_the_layer_going_on():
    """Fascicles under a deep aponeurosis with nothing below it: a deeper muscle's, running another way, leave
    the thickness as it is; the same fascicles running the layer's way mean the layer goes on."""
    step = np.array([0.1, 0.1])
    apo, fas, truth = _case(
        step, (4.0, 0.0), (16.0, 0.0), 20.0, 1, pieces=((0.15, 0.85),), centres=(20.0, 24.0, 28.0)
    )
    layer = fas[:, 60:140].copy()
    fas[:, 180:260] = layer[::-1]  # mirrored: descending the other way
    deeper_muscle = measure_architecture(apo, fas, tuple(step))
    fas[:, 180:260] = layer
    going_on = measure_architecture(apo, fas, tuple(step))
    assert deeper_muscle.thickness == pytest.approx(truth["thickness"], abs=0.3)
    assert math.isnan(going_on.thickness)
    assert "the fascicle layer goes on below the deepest band" in going_on.qc[0]


def test_the_layer_goes_round_a_band_inside_one_muscle():
    """A band across the middle of the muscle over 60 % of its width (a vessel, a septum): with the fascicles
    running the same way on its two sides it is inside the layer, and thickness spans the whole muscle; with
    them running opposite ways it is the boundary of two layers, and one of them is measured."""
    step = np.array([0.1, 0.1])
    apo, fas, truth = _case(
        step, (4.0, 0.0), (20.0, 0.0), 20.0, 1, pieces=((0.15, 0.85),), centres=(20.0, 24.0, 28.0)
    )
    apo[:300, 118:124] = 1  # a band at 12 mm over the left 300 of 480 columns
    one_muscle = measure_architecture(apo, fas, tuple(step))
    fas[:300, 125:195] = fas[:300, 125:195][::-1].copy()  # under the band, the fascicles run the other way
    two_layers = measure_architecture(apo, fas, tuple(step))
    assert one_muscle.thickness == pytest.approx(truth["thickness"], abs=0.3)
    assert one_muscle.pennation_angle == pytest.approx(20.0, abs=1.0)
    assert two_layers.thickness < 0.6 * truth["thickness"]


def test_a_broken_band_is_joined_across_its_gaps():
    """A faint deep aponeurosis that the network marks in three pieces, none a quarter of the width."""
    step = np.array([0.1, 0.1])
    apo, fas, truth = _case(step, (4.0, 0.0), (20.0, 0.01), 20.0, 1, centres=(16.0, 24.0, 32.0))
    for gap in ((100, 140), (240, 290), (360, 400)):
        apo[gap[0] : gap[1], 150:] = 0
    result = measure_architecture(apo, fas, tuple(step))
    assert result.thickness == pytest.approx(truth["thickness"], abs=0.3)
    assert not any("aponeuros" in message for message in result.qc)


def test_bad_input_raises():
    with pytest.raises(InputError, match="values other than 0 and 1"):
        measure_architecture(np.full(SHAPE, 255, np.uint8), None, None)
    with pytest.raises(InputError, match="2D"):
        measure_architecture(np.zeros((4, 4, 4)), None, None)


def test_real_masks_agree_with_the_vertical_gap(dl_track_dir):
    """On annotators' masks, the mean thickness is the mean vertical gap between the bands, foreshortened by
    the bands' tilt (cos 15° ≈ 0.97), and longer only by what a straight line misses of a curved band."""
    from PIL import Image

    masks = sorted((dl_track_dir / "aponeurosis" / "masks").glob("*.png"))[:20]
    for path in masks:
        apo = (np.asarray(Image.open(path)).T > 127).astype(np.uint8)
        result = measure_architecture(apo, None, None)
        assert result.units == "px" and not result.qc, path.name
        top, bottom = _band_rows(apo)
        gap = np.mean([bottom[x] - top[x] for x in set(top) & set(bottom)])
        assert 0.9 * gap <= result.thickness_mean <= 1.05 * gap, path.name


def _band_rows(apo):
    """Per column, the deep edge of the upper band and the upper edge of the lower band (two largest)."""
    from skimage.measure import label

    labels = label(apo, connectivity=2)
    sizes = np.bincount(labels.ravel())[1:]
    upper, lower = sorted(np.argsort(sizes)[-2:] + 1, key=lambda k: np.nonzero(labels == k)[1].mean())
    top = {x: ys.max() + 1 for x in range(apo.shape[0]) if (ys := np.nonzero(labels[x] == upper)[0]).size}
    bottom = {x: ys.min() for x in range(apo.shape[0]) if (ys := np.nonzero(labels[x] == lower)[0]).size}
    return top, bottom


def test_phantoms_match_their_truth():
    phantoms = pytest.importorskip("sonomuscle.data.phantoms.architecture2d")
    rng = np.random.default_rng(0)
    for _ in range(10):
        case = phantoms.make_phantom(rng)
        spacing = float(case.truth["spacing_mm"])
        result = measure_architecture(case.aponeurosis, case.fascicle, (spacing, spacing))
        assert result.thickness == pytest.approx(case.truth["thickness_mm"], abs=0.3)
        assert result.thickness_mean == pytest.approx(case.truth["thickness_mean_mm"], abs=0.3)
        assert result.pennation_angle == pytest.approx(case.truth["pennation_angle_deg"], abs=1.0)
        assert result.fascicle_length == pytest.approx(case.truth["fascicle_length_mm"], rel=0.03)


def test_steep_phantoms_match_their_truth():
    """Contracted muscle: fascicles at 40–60° to the deep aponeurosis, no cut-off that flattens them."""
    phantoms = pytest.importorskip("sonomuscle.data.phantoms.architecture2d")
    rng = np.random.default_rng(1)
    errors = []
    for _ in range(8):
        case = phantoms.make_phantom(rng, pennation_range_deg=(40.0, 60.0))
        spacing = float(case.truth["spacing_mm"])
        result = measure_architecture(case.aponeurosis, case.fascicle, (spacing, spacing))
        errors.append(result.pennation_angle - case.truth["pennation_angle_deg"])
        assert result.thickness == pytest.approx(case.truth["thickness_mm"], abs=0.3)
    assert np.mean(np.abs(errors)) <= 1.0 and np.max(np.abs(errors)) <= 2.0, np.round(errors, 2)


def test_pieces_have_the_orientations_and_sizes_regionprops_gives():
    """The fascicle pieces' moments are summed all at once; each piece keeps the orientation skimage gives it
    (modulo 180°: a piece along the second axis is ±90° by the sign of a rounding error in either)."""
    from skimage.measure import label, regionprops

    from sonomuscle.measures.architecture import _pieces

    mask = np.zeros((200, 200), dtype=bool)
    for i, angle in enumerate((-70, -35, -10, 0, 15, 40, 65, 89)):
        d = np.array([math.cos(math.radians(angle)), math.sin(math.radians(angle))])
        centre = np.array([25 + 45 * (i % 4), 40 + 80 * (i // 4)])
        a, b = centre - 14 * d, centre + 14 * d
        mask[line(*np.round(a).astype(int), *np.round(b).astype(int))] = True
    mask[5, 5] = mask[195, 150:153] = True  # a lone pixel and a short run
    mask = dilation(mask, disk_footprint(1))
    expected = [(math.degrees(r.orientation), int(r.area)) for r in regionprops(label(mask, connectivity=2))]
    pieces = _pieces(mask)
    assert [area for _, area in pieces] == [area for _, area in expected] and len(pieces) >= 9
    for (angle, _), (reference, _) in zip(pieces, expected, strict=True):
        assert min(abs(angle - reference), 180 - abs(angle - reference)) < 1e-6
    assert _pieces(np.zeros((8, 8), dtype=bool)) == []
