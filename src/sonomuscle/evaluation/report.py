"""Summary statistics of an evaluation table and the HTML report a clinician reads.

The report is one self-contained file (plots embedded as PNG), so it can be mailed or archived as is.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sonomuscle.io import atomic_write_text
from sonomuscle.metrics.agreement import agreement, bland_altman_plot, scatter_plot

# per-case metrics summarised as mean ± sd; measures compared pred vs ref with agreement statistics
SCORE_COLUMNS = ("dice", "precision", "recall", "hd95", "assd")
PAIRED_MEASURES = ("volume", "thickness_mean", "thickness_median")


def summarise(cases: pd.DataFrame, measures: Sequence[str]) -> tuple[dict, pd.DataFrame]:
    """``summary.json``'s content and the agreement table (one row per label and paired measure)."""
    evaluated = cases[cases["status"] != "skipped"]
    summary: dict = {
        "n_cases": int(cases["case"].nunique()),
        "n_evaluated": int(evaluated["case"].nunique()),
        "n_skipped": int(cases.loc[cases["status"] == "skipped", "case"].nunique()),
        "n_flagged": int(cases.loc[cases["status"] == "flagged", "case"].nunique()),
        "measures": list(measures),
        "labels": {},
        "agreement": {},
        "problems": problems(cases).to_dict(orient="records"),
    }
    rows = []
    for label, group in evaluated.groupby("label", sort=True):
        units = _units(group)
        per_label: dict = {"n_cases": len(group), "units": units}
        for column in SCORE_COLUMNS:
            if column in group:
                values = group[column].astype(float).dropna()
                per_label[column] = {
                    "mean": float(values.mean()) if len(values) else math.nan,
                    "sd": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
                    "n": len(values),
                }
        summary["labels"][label] = per_label
        for measure in PAIRED_MEASURES:
            if f"{measure}_pred" in group:
                stats = agreement(group[f"{measure}_pred"], group[f"{measure}_ref"])
                stats = {"units": _measure_units(measure, units, group)} | stats
                summary["agreement"].setdefault(label, {})[measure] = stats
                rows.append({"label": label, "measure": measure} | stats)
    return _nan_to_null(summary), pd.DataFrame(rows)


def problems(cases: pd.DataFrame) -> pd.DataFrame:
    """Every skipped case and every flagged label, with its reason."""
    bad = cases[cases["status"] != "ok"]
    return bad[["case", "label", "status", "problem"]].fillna("").reset_index(drop=True)


def write_report(
    path: Path,
    cases: pd.DataFrame,
    summary: dict,
    agreement_table: pd.DataFrame,
    overlays: Sequence[tuple[str, np.ndarray, np.ndarray, tuple[float, ...] | None]],
) -> Path:
    """Render ``report.html``: summary, agreement with plots, worst-case overlays, problems."""
    parts = [
        f"<h1>Segmentation evaluation</h1><p>{summary['n_cases']} cases: {summary['n_evaluated']} evaluated, "
        f"{summary['n_skipped']} skipped, {summary['n_flagged']} with a flagged label.</p>",
        "<h2>Per-label scores (mean ± SD over cases)</h2>",
        _scores_table(summary).to_html(index=False, na_rep="–"),
    ]
    if len(agreement_table):
        columns = ["label", "measure", "units", "n", "bias", "loa_lower", "loa_upper", "icc", "sem", "mdc95"]
        columns += ["mae", "rmse", "r", "reason"]
        parts += [
            "<h2>Agreement of prediction with reference</h2>",
            "<p>Bias and 95 % limits of agreement (Bland–Altman), ICC(2,1) absolute agreement, SEM, smallest "
            "detectable change (MDC95), mean absolute and root-mean-square error, Pearson r.</p>",
            agreement_table[columns].to_html(index=False, na_rep="–", float_format="{:.4g}".format),
        ]
        evaluated = cases[cases["status"] != "skipped"]
        for row in agreement_table.itertuples(index=False):
            group = evaluated[evaluated["label"] == row.label]
            pred, ref = group[f"{row.measure}_pred"], group[f"{row.measure}_ref"]
            parts.append(
                embedded_figure(_agreement_figure(pred, ref, row.units, title=f"{row.label} {row.measure}"))
            )
    if overlays:
        parts.append(
            "<h2>Lowest-Dice cases</h2><p>Reference outline in green, prediction outline in red.</p>"
        )
        parts += [embedded_figure(_overlay_figure(*overlay)) for overlay in overlays]
    table = problems(cases)
    parts += [
        f"<h2>Problems ({len(table)})</h2>",
        table.to_html(index=False) if len(table) else "<p>None: every case was evaluated.</p>",
    ]
    return write_page(path, "sonomuscle evaluation", parts)


def write_page(path: Path, title: str, parts: Sequence[str]) -> Path:
    """One self-contained HTML page of ``parts`` (HTML snippets), written atomically."""
    page = (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>'
        "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{max-width:100%}"
        "</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )
    return atomic_write_text(path, page)


def _scores_table(summary: dict) -> pd.DataFrame:
    rows = []
    for label, per_label in summary["labels"].items():
        row = {"label": label, "cases": per_label["n_cases"], "units": per_label["units"]}
        for column in SCORE_COLUMNS:
            if column in per_label:
                s = per_label[column]
                row[column] = " ± ".join("–" if v is None else f"{v:.3f}" for v in (s["mean"], s["sd"]))
        rows.append(row)
    return pd.DataFrame(rows)


def _agreement_figure(pred: pd.Series, ref: pd.Series, units: str, title: str) -> Figure:
    fig = Figure(figsize=(10, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    bland_altman_plot(pred, ref, left, units=units, title=f"{title}: Bland–Altman")
    scatter_plot(pred, ref, right, units=units, title=f"{title}: prediction vs reference")
    return fig


def _overlay_figure(title: str, pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None) -> Figure:
    """Each label's outlines on the (X, Y) slice, transposed so depth runs down the picture as on the scanner."""
    fig = Figure(figsize=(5, 5), layout="constrained")
    ax = fig.subplots()
    aspect = 1.0 if spacing is None else spacing[1] / spacing[0]
    ax.imshow((ref > 0).T, cmap="gray_r", vmin=0, vmax=4, interpolation="nearest", aspect=aspect)
    for value in np.union1d(np.unique(ref), np.unique(pred)):
        for mask, color in ((ref, "tab:green"), (pred, "tab:red")):
            if value and (mask == value).any():
                ax.contour((mask == value).T.astype(float), levels=[0.5], colors=color, linewidths=1.2)
    ax.set_title(title, fontsize="small")
    ax.set_axis_off()
    return fig


def embedded_figure(fig: Figure) -> str:
    """An ``<img>`` with the figure inside it as PNG, titled by its first axes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<p><img alt="{html.escape(fig.axes[0].get_title())}" src="data:image/png;base64,{data}"></p>'


def _nan_to_null(obj):
    """NaN is not JSON: summary.json says null instead."""
    if isinstance(obj, dict):
        return {k: _nan_to_null(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_null(v) for v in obj]
    return None if isinstance(obj, float) and math.isnan(obj) else obj


def _units(group: pd.DataFrame) -> str:
    units = sorted(set(group["units"].dropna()))
    return units[0] if len(units) == 1 else "mixed"


def _measure_units(measure: str, units: str, group: pd.DataFrame) -> str:
    if measure != "volume" or units == "mixed":
        return units
    dims = set(group["ndim"].dropna().astype(int))
    return units + {2: "²", 3: "³"}[dims.pop()] if len(dims) == 1 else "mixed"
