"""Agreement statistics and per-case segmentation metrics against hand-computed values."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure

from sonomuscle.metrics.agreement import agreement, bland_altman_plot, scatter_plot
from sonomuscle.metrics.segmentation import segmentation_metrics

matplotlib.use("Agg")

REF = np.array([10.0, 12.5, 9.0, 15.0, 11.0, 13.5, 8.0])
PRED = np.array([10.4, 12.0, 9.9, 15.6, 10.5, 14.5, 8.1])


def test_constant_offset_gives_exact_bias_and_limits():
    stats = agreement(REF + 2, REF)
    assert stats["n"] == 7 and stats["reason"] is None
    for key in ("bias", "loa_lower", "loa_upper", "mae", "rmse"):
        assert stats[key] == pytest.approx(2.0, abs=1e-12), key
    assert stats["sd_diff"] == pytest.approx(0.0, abs=1e-12)
    assert stats["sem"] == pytest.approx(0.0, abs=1e-12) and stats["mdc95"] == pytest.approx(0.0, abs=1e-12)
    assert stats["r"] == pytest.approx(1.0)


def test_limits_of_agreement_from_differences():
    diff = PRED - REF
    stats = agreement(PRED, REF)
    sd = math.sqrt(sum((d - diff.mean()) ** 2 for d in diff) / (len(diff) - 1))
    assert stats["bias"] == pytest.approx(diff.mean())
    assert stats["sd_diff"] == pytest.approx(sd)
    assert stats["loa_lower"] == pytest.approx(diff.mean() - 1.96 * sd, abs=1e-3)
    assert stats["loa_upper"] == pytest.approx(diff.mean() + 1.96 * sd, abs=1e-3)
    assert stats["mae"] == pytest.approx(np.abs(diff).mean())
    assert stats["rmse"] == pytest.approx(math.sqrt((diff**2).mean()))


def icc_a1_by_hand(x: np.ndarray) -> tuple[float, float]:
    """ICC(A,1) of McGraw & Wong (1996) from the two-way ANOVA mean squares of n items × k raters, and the
    error mean square."""
    n, k = x.shape
    grand = x.mean()
    ms_rows = k * ((x.mean(axis=1) - grand) ** 2).sum() / (n - 1)
    ms_cols = n * ((x.mean(axis=0) - grand) ** 2).sum() / (k - 1)
    residual = x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + grand
    ms_error = (residual**2).sum() / ((n - 1) * (k - 1))
    icc = (ms_rows - ms_error) / (ms_rows + (k - 1) * ms_error + k * (ms_cols - ms_error) / n)
    return icc, ms_error


def test_icc_and_sem_match_two_way_anova_by_hand():
    icc_a1, ms_error = icc_a1_by_hand(np.column_stack([PRED, REF]))  # n subjects × k = 2 methods

    stats = agreement(PRED, REF)
    assert stats["icc"] == pytest.approx(icc_a1, abs=1e-6)
    assert stats["icc_ci_lower"] <= stats["icc"] <= stats["icc_ci_upper"]
    assert stats["sem"] == pytest.approx(math.sqrt(ms_error), abs=1e-9)
    assert stats["mdc95"] == pytest.approx(1.96 * math.sqrt(2) * math.sqrt(ms_error), rel=1e-4)


def test_pearson_r_of_a_linear_relation_and_its_p_value():
    stats = agreement(2 * REF + 1, REF)
    assert stats["r"] == pytest.approx(1.0) and stats["r_p"] < 1e-6
    assert stats["icc"] < 0.5  # perfectly correlated yet far from agreeing: ICC(A,1) sees it, r does not


def test_nan_pairs_are_dropped_and_counted():
    pred = np.r_[PRED, np.nan, 3.0]
    ref = np.r_[REF, 1.0, np.nan]
    stats = agreement(pred, ref)
    assert stats["n"] == 7 and stats["n_dropped"] == 2
    assert stats["bias"] == pytest.approx(agreement(PRED, REF)["bias"])


@pytest.mark.parametrize(
    ("pred", "ref", "reason"),
    [([1.0, np.nan, 2.0], [1.0, 2.0, 2.5], "2 complete pairs"), ([], [], "0 complete pairs")],
)
def test_too_few_pairs_give_nan_and_a_reason(pred, ref, reason):
    stats = agreement(pred, ref)
    assert reason in stats["reason"]
    assert math.isnan(stats["bias"]) and math.isnan(stats["icc"])


def test_constant_values_keep_bias_but_no_icc():
    stats = agreement([3.0, 3.0, 3.0], [2.0, 2.0, 2.0])
    assert stats["bias"] == pytest.approx(1.0)
    assert math.isnan(stats["icc"]) and "constant" in stats["reason"]


def test_plots_draw_bias_limits_and_identity():
    fig = Figure()
    ba, sc = fig.subplots(1, 2)
    bland_altman_plot(REF + 2, REF, ba, units="mm", title="thickness")
    assert sorted(line.get_ydata()[0] for line in ba.lines) == pytest.approx([0.0, 2.0, 2.0, 2.0])
    assert "mm" in ba.get_ylabel()
    scatter_plot(PRED, REF, sc, units="mm")
    identity = sc.lines[0]
    assert np.allclose(identity.get_xdata(), identity.get_ydata())
    assert "ICC" in sc.get_legend().get_texts()[0].get_text()


def _square_pair(shift: int, axis: int, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    ref = np.zeros((32,) * ndim, dtype=np.uint8)
    ref[(slice(8, 18),) * ndim] = 1
    return np.roll(ref, shift, axis=axis), ref


@pytest.mark.parametrize(
    ("ndim", "axis", "spacing"),
    [(2, 0, (0.5, 0.2)), (2, 1, (0.5, 0.2)), (3, 2, (0.3, 0.3, 1.5)), (3, 0, (0.3, 0.3, 1.5))],
)
def test_shifted_squares_give_known_dice_and_hd95(ndim, axis, spacing):
    k = 3
    pred, ref = _square_pair(k, axis, ndim)
    result = segmentation_metrics(pred, ref, spacing, {"muscle": 1})["muscle"]
    assert result["dice"] == pytest.approx((10 - k) / 10, abs=1e-6)  # overlap (10-k)/10 of each cube
    assert result["hd95"] == pytest.approx(k * spacing[axis], abs=1e-5)
    assert 0 < result["assd"] < result["hd95"]
    assert result["precision"] == pytest.approx(0.7) and result["recall"] == pytest.approx(0.7)
    assert result["flag"] is None


def test_distances_scale_with_spacing_and_default_to_pixels():
    pred, ref = _square_pair(2, 1, 3)
    in_px = segmentation_metrics(pred, ref, None, {"m": 1})["m"]
    in_mm = segmentation_metrics(pred, ref, (0.4, 0.4, 0.4), {"m": 1})["m"]
    assert in_px["hd95"] == pytest.approx(2.0)
    assert in_mm["assd"] == pytest.approx(0.4 * in_px["assd"], rel=1e-5)


def test_identical_and_empty_masks_are_explicit():
    _, ref = _square_pair(0, 0, 2)
    labels = ref.copy()
    labels[20:24, 20:24] = 2
    same = segmentation_metrics(labels, labels, (1.0, 1.0), {"a": 1, "b": 2})
    assert same["a"]["dice"] == pytest.approx(1.0) and same["a"]["hd95"] == 0 and same["b"]["assd"] == 0

    empty = np.zeros_like(labels)
    result = segmentation_metrics(empty, labels, (1.0, 1.0), {"a": 1, "absent": 3})
    assert (
        result["a"]["dice"] == 0 and result["a"]["flag"] == "empty_pred" and math.isnan(result["a"]["hd95"])
    )
    assert result["absent"]["dice"] == 1 and result["absent"]["flag"] == "both_empty"
    assert segmentation_metrics(labels, empty, None, {"a": 1})["a"]["flag"] == "empty_ref"


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shape"):
        segmentation_metrics(np.zeros((4, 4)), np.zeros((4, 5)), None, {"a": 1})
