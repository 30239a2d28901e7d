"""Summary statistics of an evaluation table and the HTML report a clinician reads.

The report is one self-contained file (plots embedded as PNG), so it can be mailed or archived as is.
Numbers read the same everywhere in it: fractions (Dice, precision, recall, ICC and its 95 % CI, r) with
3 decimals, quantities with units (distances, areas, volumes, agreement statistics) with 3 significant
digits, written out in full from 1000 up; a missing value is "–". Warnings raised while computing (small
samples, undefined statistics) are listed in the report's "Warnings" section rather than printed on stderr.

The page's building blocks are public so that other reports (``sonomuscle demo``) read the same:
:func:`agreement_html`, :func:`warnings_html`, :func:`overlay_figure`, :func:`embedded_figure`,
:func:`linked_thumbnail`, :func:`write_page`, :func:`collected_warnings` and :func:`nan_to_null`.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from sonomuscle import quiet_library_notices
from sonomuscle.io import atomic_write_text
from sonomuscle.metrics.agreement import STAT_KEYS, agreement, bland_altman_plot, scatter_plot

# per-case scores summarised as mean ± sd; measures compared pred vs ref with agreement statistics
FRACTION_SCORES = ("dice", "precision", "recall")
DISTANCE_SCORES = ("hd95", "assd")
PAIRED_MEASURES = ("area", "volume", "thickness_mean", "thickness_median", "echo")
GREY_LEVELS = "grey levels"
# deprecation notices speak to developers, not to the reader of a report
IGNORED_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
REFERENCE_COLOUR, PREDICTION_COLOUR = "tab:green", "tab:red"
CLASS_LINE_STYLES = ("solid", "dashed", "dotted", "dashdot")


@dataclass
class Overlay:
    """One slice of a case to draw: each class's prediction and reference masks, over the image if given."""

    title: str
    masks: list[tuple[str, np.ndarray, np.ndarray]]  # (class, prediction, reference): (X, Y) booleans
    spacing: Sequence[float] | None
    image: np.ndarray | None = None  # grey (X, Y) on the masks' grid


@contextmanager
def collected_warnings(into: list[str], context: str = "") -> Iterator[None]:
    """Append the warnings raised inside to ``into`` (one line ``"context: message"`` each), not to stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for category in IGNORED_WARNINGS:
            warnings.simplefilter("ignore", category)
        quiet_library_notices()
        yield
    prefix = f"{context}: " if context else ""
    into.extend(dict.fromkeys(prefix + " ".join(str(w.message).split()) for w in caught))


def summarise(cases: pd.DataFrame, measures: Sequence[str]) -> tuple[dict, pd.DataFrame]:
    """``summary.json``'s content and the agreement table (one row per class and paired measure)."""
    evaluated = cases[cases["status"] != "skipped"]
    summary: dict = {
        "n_cases": int(cases["case"].nunique()),
        "n_evaluated": int(evaluated["case"].nunique()),
        "n_skipped": int(cases.loc[cases["status"] == "skipped", "case"].nunique()),
        "n_flagged": int(cases.loc[cases["status"] == "flagged", "case"].nunique()),
        "measures": list(measures),
        "classes": {},
        "agreement": {},
        "problems": problems(cases).to_dict(orient="records"),
        "warnings": _case_warnings(cases),
    }
    rows = []
    for name, group in evaluated.groupby("class", sort=True):
        units = _units(group)
        summary["classes"][name] = {"n_cases": len(group), "units": units} | _score_summaries(group)
        for measure in PAIRED_MEASURES:
            if f"{measure}_ref" not in group or group[f"{measure}_ref"].isna().all():
                continue  # not measured for this class
            stats = _compared(group, f"{name} {measure}", measure, units, summary["warnings"])
            summary["agreement"].setdefault(name, {})[measure] = stats
            rows.append({"class": name, "measure": measure} | stats)
    summary["warnings"] = list(dict.fromkeys(summary["warnings"]))
    return nan_to_null(summary), pd.DataFrame(rows)


def problems(cases: pd.DataFrame) -> pd.DataFrame:
    """Every skipped case and every flagged class, with its reason."""
    bad = cases[cases["status"] != "ok"]
    return bad[["case", "class", "status", "problem"]].fillna("").reset_index(drop=True)


def write_report(
    path: Path,
    cases: pd.DataFrame,
    summary: dict,
    agreement_table: pd.DataFrame,
    overlays: Sequence[Overlay],
    images: Path | None = None,
) -> Path:
    """Render ``report.html``: summary, scores, agreement and plots, worst cases, problems, warnings."""
    parts = [
        f"<h1>Segmentation evaluation</h1><p>{summary['n_cases']} cases: {summary['n_evaluated']} evaluated, "
        f"{summary['n_skipped']} skipped, {summary['n_flagged']} with a flagged class.</p>",
        "<h2>Per-class scores (mean ± SD over cases)</h2>",
        "<p>Dice, precision and recall are fractions; HD95 and ASSD are in the units column.</p>",
        _scores_table(summary).to_html(index=False, na_rep="–"),
    ]
    if len(agreement_table):
        parts.append(agreement_html(agreement_table))
        parts += _agreement_figures(cases[cases["status"] != "skipped"], agreement_table)
    if overlays:
        where = f"the images in {html.escape(str(images))}" if images else "the reference mask (grey)"
        parts.append(
            f"<h2>Lowest-Dice cases</h2><p>Outlines drawn over {where}: reference in green, prediction in "
            "red, one line style per class (legend).</p>"
        )
        parts += [embedded_figure(overlay_figure(overlay)) for overlay in overlays]
    table = problems(cases)
    parts += [
        f"<h2>Problems ({len(table)})</h2>",
        table.to_html(index=False) if len(table) else "<p>None: every case was evaluated.</p>",
        warnings_html(summary["warnings"]),
    ]
    return write_page(path, "sonomuscle evaluation", parts)


def agreement_html(table: pd.DataFrame, title: str = "Agreement of prediction with reference") -> str:
    """A titled HTML table of agreement statistics, one row per compared measure.

    ``table`` holds identifying columns first (any, e.g. ``class`` and ``measure``), then ``units``, ``n``
    and the keys of :func:`~sonomuscle.metrics.agreement.agreement` (``icc_ci_lower``/``upper`` included).
    """
    identity = [c for c in table.columns if c not in (*STAT_KEYS, "units", "n", "n_dropped", "reason")]
    shown = pd.DataFrame({c: table[c].astype(str) for c in identity})
    for heading, render in _AGREEMENT_COLUMNS:
        shown[heading] = [render(row) for row in table.to_dict(orient="records")]
    return (
        f"<h2>{html.escape(title)}</h2><p>Bias and 95 % limits of agreement (Bland–Altman), ICC(2,1) "
        "absolute agreement with its 95 % confidence interval (given to 2 decimals by pingouin), standard "
        "error of measurement (SEM), smallest detectable change (MDC95), mean absolute and root-mean-square "
        "error, Pearson r. Areas are in units², volumes in units³.</p>" + shown.to_html(index=False)
    )


def warnings_html(messages: Sequence[str], title: str = "Warnings") -> str:
    """A titled list of warnings (what used to go to stderr), or "None." when there were none."""
    items = "".join(f"<li>{html.escape(m)}</li>" for m in messages)
    return f"<h2>{html.escape(title)} ({len(messages)})</h2>" + (
        f"<ul>{items}</ul>" if messages else "<p>None.</p>"
    )


def write_page(path: Path, title: str, parts: Sequence[str]) -> Path:
    """One self-contained HTML page of ``parts`` (HTML snippets), written atomically."""
    page = (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>'
        "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{max-width:100%}"
        "</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )
    return atomic_write_text(path, page)


def overlay_figure(overlay: Overlay) -> Figure:
    """Each class's outlines on the (X, Y) slice, transposed: depth runs down the picture as on a scanner."""
    fig = Figure(figsize=(5, 5.5), layout="constrained")
    ax = fig.subplots()
    aspect = 1.0 if overlay.spacing is None else overlay.spacing[1] / overlay.spacing[0]
    if overlay.image is not None:
        ax.imshow(overlay.image.T, cmap="gray", interpolation="nearest", aspect=aspect)
    else:
        reference = np.any([ref for _, _, ref in overlay.masks], axis=0)
        ax.imshow(reference.T, cmap="gray_r", vmin=0, vmax=4, interpolation="nearest", aspect=aspect)
    legend = []
    for (name, pred, ref), style in zip(overlay.masks, itertools.cycle(CLASS_LINE_STYLES)):
        for mask, colour, side in (
            (ref, REFERENCE_COLOUR, "reference"),
            (pred, PREDICTION_COLOUR, "prediction"),
        ):
            if mask.any():
                ax.contour(
                    mask.T.astype(float), levels=[0.5], colors=colour, linewidths=1.2, linestyles=style
                )
            legend.append(Line2D([], [], color=colour, linestyle=style, label=f"{name} {side}"))
    ax.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, 0), ncols=2, fontsize="small")
    ax.set_title(overlay.title, fontsize="small")
    ax.set_axis_off()
    return fig


def embedded_figure(fig: Figure) -> str:
    """An ``<img>`` with the figure inside it as PNG, titled by its first axes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return _img(buffer.getvalue(), "png", fig.axes[0].get_title())


def embedded_picture(path: Path, alt: str) -> str:
    """An ``<img>`` with a PNG or JPEG file inside it (the report stays one file); a line if it is missing."""
    if not path.is_file():
        return f"<p>({html.escape(alt)}: {html.escape(path.name)} was not written)</p>"
    kind = "jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "png"
    return _img(path.read_bytes(), kind, alt)


def linked_thumbnail(path: Path, href: str, alt: str, width: int = 320) -> str:
    """A small JPEG copy of a picture inside the page, linked to the full picture: many overlays stay
    readable without making the page as heavy as all of them; a line if the file is missing."""
    if not path.is_file():
        return f"({html.escape(alt)}: {html.escape(path.name)} was not written)"
    with Image.open(path) as picture:
        picture.thumbnail((width, 4 * width))
        buffer = io.BytesIO()
        picture.convert("RGB").save(buffer, "JPEG", quality=85)
    return f'<a href="{html.escape(href)}">{_img_tag(buffer.getvalue(), "jpeg", alt)}</a>'


def _img(data: bytes, kind: str, alt: str) -> str:
    return f"<p>{_img_tag(data, kind, alt)}</p>"


def _img_tag(data: bytes, kind: str, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/{kind};base64,{encoded}">'


def format_fraction(value: float | None) -> str:
    """A fraction (Dice, ICC, r) with 3 decimals."""
    return "–" if _missing(value) else f"{value:.3f}"


def format_quantity(value: float | None) -> str:
    """3 significant digits; whole numbers from 1000 up, so no exponent for a reader to decode."""
    if _missing(value):
        return "–"
    text = f"{value:.3g}"
    return f"{value:.0f}" if "e+" in text else text


def _missing(value: float | None) -> bool:
    return value is None or not math.isfinite(value)


def _icc(row: dict) -> str:
    """ICC with its CI in brackets; just "–" when it could not be computed."""
    if _missing(row["icc"]):
        return "–"
    return f"{format_fraction(row['icc'])} ({_interval(row['icc_ci_lower'], row['icc_ci_upper'])})"


def _interval(lower: float, upper: float, fmt: Callable[[float], str] = format_fraction) -> str:
    return f"{fmt(lower)} to {fmt(upper)}"


# (heading, cell of one agreement row) of the agreement table
_AGREEMENT_COLUMNS: tuple[tuple[str, Callable[[dict], str]], ...] = (
    ("units", lambda r: str(r["units"])),
    ("n", lambda r: str(int(r["n"]))),
    ("bias", lambda r: format_quantity(r["bias"])),
    ("95 % limits of agreement", lambda r: _interval(r["loa_lower"], r["loa_upper"], format_quantity)),
    ("ICC (95 % CI)", _icc),
    ("SEM", lambda r: format_quantity(r["sem"])),
    ("MDC95", lambda r: format_quantity(r["mdc95"])),
    ("MAE", lambda r: format_quantity(r["mae"])),
    ("RMSE", lambda r: format_quantity(r["rmse"])),
    ("r", lambda r: format_fraction(r["r"])),
    ("note", lambda r: r["reason"] if isinstance(r["reason"], str) else ""),
)


def _compared(group: pd.DataFrame, what: str, measure: str, units: str, messages: list[str]) -> dict:
    """Agreement statistics of one class's measure; its warnings, and why a statistic is undefined, go to
    ``messages`` prefixed with ``what``."""
    with collected_warnings(messages, what):
        stats = agreement(group[f"{measure}_pred"], group[f"{measure}_ref"])
    if stats["reason"]:
        messages.append(f"{what}: {stats['reason']}")
    return {"units": _measure_units(measure, units)} | stats


def _score_summaries(group: pd.DataFrame) -> dict[str, dict]:
    """Mean, SD and count of each per-case score the table has."""
    out = {}
    for column in (*FRACTION_SCORES, *DISTANCE_SCORES):
        if column in group:
            values = group[column].astype(float).dropna()
            out[column] = {
                "mean": float(values.mean()) if len(values) else math.nan,
                "sd": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
                "n": len(values),
            }
    return out


def _scores_table(summary: dict) -> pd.DataFrame:
    rows = []
    for name, per_class in summary["classes"].items():
        row = {"class": name, "cases": per_class["n_cases"], "units": per_class["units"]}
        for column in (*FRACTION_SCORES, *DISTANCE_SCORES):
            if column in per_class:
                fmt = format_fraction if column in FRACTION_SCORES else format_quantity
                row[column] = f"{fmt(per_class[column]['mean'])} ± {fmt(per_class[column]['sd'])}"
        rows.append(row)
    return pd.DataFrame(rows)


def _agreement_figures(evaluated: pd.DataFrame, agreement_table: pd.DataFrame) -> list[str]:
    """Bland–Altman and scatter plot of each compared measure."""
    figures = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the plots recompute statistics whose warnings summarise() listed
        for row in agreement_table.to_dict(orient="records"):
            group = evaluated[evaluated["class"] == row["class"]]
            pred, ref = group[f"{row['measure']}_pred"], group[f"{row['measure']}_ref"]
            title = f"{row['class']} {row['measure']}"
            figures.append(embedded_figure(_agreement_figure(pred, ref, row["units"], title)))
    return figures


def _agreement_figure(pred: pd.Series, ref: pd.Series, units: str, title: str) -> Figure:
    fig = Figure(figsize=(10, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    bland_altman_plot(pred, ref, left, units=units, title=f"{title}: Bland–Altman")
    scatter_plot(pred, ref, right, units=units, title=f"{title}: prediction vs reference")
    return fig


def _case_warnings(cases: pd.DataFrame) -> list[str]:
    """``case: message`` for each case whose evaluation raised warnings."""
    if "warnings" not in cases:
        return []
    raised = cases.dropna(subset=["warnings"]).drop_duplicates(["case", "warnings"])
    return [f"{case}: {text}" for case, text in zip(raised["case"], raised["warnings"], strict=True)]


def nan_to_null(obj):
    """NaN is not JSON: summary.json says null instead (in nested dicts and lists too)."""
    if isinstance(obj, dict):
        return {k: nan_to_null(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [nan_to_null(v) for v in obj]
    return None if isinstance(obj, float) and math.isnan(obj) else obj


def _units(group: pd.DataFrame) -> str:
    units = sorted(set(group["units"].dropna()))
    return units[0] if len(units) == 1 else "mixed"


def _measure_units(measure: str, units: str) -> str:
    """Areas in units², volumes in units³, thickness in units, echo intensity in the image's grey levels."""
    if measure == "echo":
        return GREY_LEVELS
    power = {"area": "²", "volume": "³"}.get(measure, "")
    return units if units == "mixed" else units + power
