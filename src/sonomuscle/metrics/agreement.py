"""Agreement between a model's measurements and a reference: what method-comparison papers report.

Bland–Altman bias and limits of agreement, ICC(2,1) absolute agreement, SEM, MDC95, MAE, RMSE and Pearson r,
computed by pingouin / numpy rather than hand-written ANOVA formulas.

SEM is the square root of the error mean square of the two-way ANOVA (Weir 2005, the form that goes with
ICC(2,1)); with two methods this equals ``SD_diff / sqrt(2)``, which is how it is computed here.
MDC95 = 1.96 · √2 · SEM, the smallest change one case must show to exceed measurement error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pingouin as pg
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from matplotlib.axes import Axes

MIN_PAIRS = 3
_Z95 = 1.959963984540054
# pingouin's name for ICC(2,1), two-way random effects, absolute agreement, single rater
_ICC_ABSOLUTE = "ICC(A,1)"

STAT_KEYS = (
    "bias",
    "sd_diff",
    "loa_lower",
    "loa_upper",
    "icc",
    "icc_ci_lower",
    "icc_ci_upper",
    "sem",
    "mdc95",
    "mae",
    "rmse",
    "r",
    "r_p",
)


def agreement(pred: ArrayLike, ref: ArrayLike) -> dict[str, Any]:
    """Agreement statistics of paired measurements; NaN pairs are dropped and counted.

    Returns ``n``, ``n_dropped``, every key of ``STAT_KEYS`` and ``reason`` (``None`` when the statistics
    could be computed; otherwise why they are NaN, e.g. fewer than 3 pairs).
    """
    pred = np.asarray(pred, dtype=float).ravel()
    ref = np.asarray(ref, dtype=float).ravel()
    if pred.shape != ref.shape:
        raise ValueError(f"pred has {pred.size} values but ref has {ref.size}")
    keep = np.isfinite(pred) & np.isfinite(ref)
    pred, ref = pred[keep], ref[keep]
    out: dict[str, Any] = {"n": int(keep.sum()), "n_dropped": int((~keep).sum())}
    out.update(dict.fromkeys(STAT_KEYS, math.nan))
    out["reason"] = None
    if pred.size < MIN_PAIRS:
        out["reason"] = f"{pred.size} complete pairs, at least {MIN_PAIRS} needed"
        return out

    diff = pred - ref
    sd = float(np.std(diff, ddof=1))
    sem = sd / math.sqrt(2)
    out.update(
        bias=float(diff.mean()),
        sd_diff=sd,
        loa_lower=float(diff.mean() - _Z95 * sd),
        loa_upper=float(diff.mean() + _Z95 * sd),
        sem=sem,
        mdc95=_Z95 * math.sqrt(2) * sem,
        mae=float(np.abs(diff).mean()),
        rmse=float(np.sqrt(np.mean(diff**2))),
    )
    if np.ptp(pred) == 0 or np.ptp(ref) == 0:
        out["reason"] = "constant values: ICC and r are undefined"
        return out
    out.update(_icc_absolute(pred, ref))
    r = pg.corr(pred, ref, method="pearson")
    out.update(r=float(r["r"].iloc[0]), r_p=float(r["p_val"].iloc[0]))
    return out


def _icc_absolute(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """ICC(2,1) with its 95 % CI (pingouin rounds the CI to two decimals)."""
    n = pred.size
    long = pd.DataFrame(
        {
            "case": np.tile(np.arange(n), 2),
            "method": ["pred"] * n + ["ref"] * n,
            "value": np.concatenate([pred, ref]),
        }
    )
    with np.errstate(divide="ignore", invalid="ignore"):  # perfect agreement: the CI's F ratios divide by 0
        table = pg.intraclass_corr(long, targets="case", raters="method", ratings="value")
    row = table.set_index("Type").loc[_ICC_ABSOLUTE]
    lower, upper = row["CI95"]
    return {"icc": float(row["ICC"]), "icc_ci_lower": float(lower), "icc_ci_upper": float(upper)}


def bland_altman_plot(
    pred: ArrayLike,
    ref: ArrayLike,
    ax: Axes,
    units: str = "",
    title: str = "",
    names: tuple[str, str] = ("prediction", "reference"),
) -> Axes:
    """Difference (pred − ref) against the pair mean, with the bias and the 95 % limits of agreement;
    ``names`` label the two sides on the axes (e.g. an observer and the others)."""
    pred, ref = np.asarray(pred, dtype=float), np.asarray(ref, dtype=float)
    stats = agreement(pred, ref)  # matplotlib leaves out the NaN pairs that agreement() drops
    ax.scatter((pred + ref) / 2, pred - ref, s=16, alpha=0.7, color="tab:blue")
    suffix = f" ({units})" if units else ""
    if math.isfinite(stats["bias"]):
        for value, style, label in (
            (stats["bias"], "-", f"bias {stats['bias']:.3g}"),
            (stats["loa_upper"], "--", f"+1.96 SD {stats['loa_upper']:.3g}"),
            (stats["loa_lower"], "--", f"−1.96 SD {stats['loa_lower']:.3g}"),
        ):
            ax.axhline(value, linestyle=style, color="tab:red", linewidth=1, label=label)
        ax.legend(fontsize="small", loc="best")
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_xlabel(f"mean of {names[0]} and {names[1]}{suffix}")
    ax.set_ylabel(f"{names[0]} − {names[1]}{suffix}")
    ax.set_title(title or "Bland–Altman")
    return ax


def scatter_plot(pred: ArrayLike, ref: ArrayLike, ax: Axes, units: str = "", title: str = "") -> Axes:
    """Prediction against reference with the identity line; r and ICC in the legend."""
    pred, ref = np.asarray(pred, dtype=float), np.asarray(ref, dtype=float)
    stats = agreement(pred, ref)
    ax.scatter(
        ref, pred, s=16, alpha=0.7, color="tab:blue", label=f"r = {stats['r']:.3f}, ICC = {stats['icc']:.3f}"
    )
    if stats["n"]:
        both = np.concatenate([pred, ref])
        lo, hi = float(np.nanmin(both)), float(np.nanmax(both))
        ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1, label="identity")
    suffix = f" ({units})" if units else ""
    ax.set_xlabel(f"reference{suffix}")
    ax.set_ylabel(f"prediction{suffix}")
    ax.set_title(title or "prediction vs reference")
    ax.legend(fontsize="small", loc="best")
    return ax


def errors_by_range_plot(
    ranges: Sequence[str], mae: Mapping[str, Sequence[float]], ax: Axes, units: str = "", title: str = ""
) -> Axes:
    """Mean absolute error per range of the reference value, one bar per series (e.g. software, observers):
    whether a method's error grows where the values are large or small."""
    x = np.arange(len(ranges))
    width = 0.8 / max(len(mae), 1)
    for i, (label, values) in enumerate(mae.items()):
        ax.bar(x + (i - (len(mae) - 1) / 2) * width, np.asarray(values, dtype=float), width, label=label)
    suffix = f" ({units})" if units else ""
    ax.set_xticks(x, list(ranges))
    ax.set_xlabel(f"reference value{suffix}")
    ax.set_ylabel(f"mean absolute error{suffix}")
    ax.set_title(title or "errors by range")
    ax.legend(fontsize="small", loc="best")
    return ax
