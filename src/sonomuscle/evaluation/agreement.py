"""``sonomuscle agreement``: measurements against several human observers, as method-comparison papers report.

Per measure the software is compared with the observers' mean, and each observer with the mean of the
other observers (the human spread, the yardstick: DESIGN.md "Agreement statistics"), both with
:func:`sonomuscle.metrics.agreement.agreement`. The verdict: the software's MAE at most
``VERDICT_FACTOR`` times the mean human MAE on the same items.

Items are matched by image name, then frame: an observers' name (bare or a relative path) goes with the
measured file sharing the longest trailing run of path parts (at least the file name), so
``vastus_lateralis/x.png`` matches ``/data/vastus_lateralis/x.png``. A name whose best match is shared is
ambiguous; it and every unmatched item are listed (``unmatched.csv``, the report), never dropped unsaid.
Flagged and failed results stay in (the software's result is the result); the statistics are also given
on the unflagged results, and a table says how well the flags catch the large errors.
"""

from __future__ import annotations

import html
import itertools
import math
import os
import warnings
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sonomuscle.data.readers import stem_of
from sonomuscle.errors import InputError, positive_mm
from sonomuscle.evaluation.pairing import counted
from sonomuscle.evaluation.report import (
    agreement_html,
    collected_warnings,
    embedded_figure,
    format_fraction,
    format_quantity,
    linked_thumbnail,
    warnings_html,
    write_page,
)
from sonomuscle.io import atomic_write_with
from sonomuscle.metrics.agreement import STAT_KEYS, agreement, bland_altman_plot, errors_by_range_plot

IMAGE_COLUMNS = ("image", "file", "filename")  # guessed, in this order, for the observers' image column
TEXT_COLUMNS = ("image", "units", "flags", "error", "calibration", "qc", "fascicle_direction")
# columns that name or describe an item, never a measure compared by default
ID_COLUMNS = frozenset({*TEXT_COLUMNS, "file", "filename", "frame", "time_s", "observer", "muscle", "remark"})
ANGLE_BINS = (0.0, 15.0, 25.0, 35.0, 90.0)  # degrees; lengths get the quartiles of the reference
LARGE_ANGLE = 5.0  # degrees: an angle error the flags should catch
LARGE_LENGTH = 10.0  # % of the reference: a length error the flags should catch
VERDICT_FACTOR = 2.0
DEGREES = "°"
SOFTWARE = "software vs observers' mean"
SOFTWARE_UNFLAGGED = "software vs observers' mean, unflagged results"
HUMANS = "observers (mean of each vs the others)"
# by_range.csv: per range, the software's differences, then the observers' (pooled)
RANGE_COLUMNS = (
    "measure",
    "range",
    "lower",
    "upper",
    "n",
    "bias",
    "mae",
    "n_humans",
    "bias_humans",
    "mae_humans",
)


@dataclass
class Measure:
    """One compared measure: the software's value and each observer's, per matched item, in one unit."""

    name: str
    column: str  # the observers' column
    units: str
    software: pd.Series  # index: the matched items
    ratings: pd.DataFrame  # matched items × observers

    @property
    def reference(self) -> pd.Series:
        return self.ratings.mean(axis=1)


@dataclass
class Agreement:
    """Everything ``sonomuscle agreement`` writes: the tables, and what the report needs to draw."""

    measurements: Path
    observers: Path
    matched: pd.DataFrame  # one row per matched item: image, [frame,] observers' name, flags, error, units
    measures: list[Measure]
    unmatched: pd.DataFrame  # table, image, frame, problem
    agreement: pd.DataFrame = field(default_factory=pd.DataFrame)
    by_range: pd.DataFrame = field(default_factory=pd.DataFrame)
    flags: pd.DataFrame = field(default_factory=pd.DataFrame)
    worst: pd.DataFrame = field(default_factory=pd.DataFrame)
    warnings: list[str] = field(default_factory=list)


def agreement_with_observers(
    measurements: str | os.PathLike, observers: str | os.PathLike, out: str | os.PathLike, **options
) -> Agreement:
    """Compare (``options`` as :func:`compare` takes them), then write ``agreement.csv``, ``by_range.csv``,
    ``worst.csv``, ``flags.csv``, ``matched.csv``, ``unmatched.csv`` and ``report.html`` into ``out``."""
    result = compare(measurements, observers, **options)
    write_outputs(result, Path(out))
    return result


def compare(
    measurements: str | os.PathLike,
    observers: str | os.PathLike,
    maps: Mapping[str, str] | None = None,
    image_column: str | None = None,
    observer_column: str = "observer",
    frame_column: str = "frame",
    observer_spacing: float | None = None,
    bins: Mapping[str, Sequence[float]] | None = None,
    worst: int = 10,
    large_angle: float = LARGE_ANGLE,
    large_length: float = LARGE_LENGTH,
) -> Agreement:
    """Read both tables, match their items and compute every table (:func:`agreement_with_observers` writes
    them).

    ``maps``: measure → observers' column (default: the numeric columns both tables have);
    ``observer_spacing``: mm per pixel of the observers' lengths, for measurements in mm; ``bins``: measure →
    edges of the reference ranges; ``large_angle`` (degrees) and ``large_length`` (% of the reference): the
    errors the flags should catch.
    """
    measurements, observers = Path(measurements), Path(observers)
    if observer_spacing is not None:
        observer_spacing = positive_mm("--observer-spacing", observer_spacing)
    rows = read_measurements(measurements)
    ratings = read_observers(observers, image_column, observer_column, frame_column)
    maps = dict(maps or _shared_columns(rows, ratings, measurements, observers))
    for measure, edges in (bins or {}).items():
        if measure not in maps:
            raise InputError(None, f"--bins {measure}: not a compared measure ({', '.join(maps)})")
        if len(set(edges)) < 2:
            raise InputError(None, f"--bins {measure}: give at least two different edges")
    for measure, column in maps.items():
        _numeric(rows, measure, measurements)
        _numeric(ratings, column, observers)
    matched, item_of, unmatched = match_items(rows, ratings)
    if not len(matched):
        raise InputError(
            observers,
            f"no item matches one in {measurements} ({counted(len(unmatched), 'unmatched item')}, "
            f"e.g. {unmatched['image'].iloc[0] if len(unmatched) else 'none'})",
        )
    item = pd.Series([item_of.get(key, -1) for key in _keys(ratings)], index=ratings.index)
    ratings = ratings.assign(item=item)[item >= 0]
    result = Agreement(measurements, observers, matched, [], unmatched)
    for measure, column in maps.items():
        units, scale = _units(matched, measure, column, observer_spacing, measurements, observers)
        table = ratings.pivot(index="item", columns="observer", values=column) * scale
        table = table.reindex(matched.index).dropna(axis=1, how="all")  # observers of other items left out
        result.measures.append(Measure(measure, column, units, matched[measure], table))
    with collected_warnings(result.warnings):
        result.agreement = agreement_table(result)
        result.by_range = range_table(result, bins or {})
    result.flags = flag_table(result, large_angle, large_length)
    result.worst = worst_table(result, worst)
    return result


def read_table(path: Path, skip_sheets: Iterable[str] = ()) -> pd.DataFrame:
    """A CSV, or an Excel workbook's sheets (less ``skip_sheets``) stacked; unreadable is one line."""
    text = {c: str for c in TEXT_COLUMNS}
    try:
        if path.suffix.lower() in (".xlsx", ".xlsm"):
            sheets = pd.read_excel(path, sheet_name=None, dtype=text)
            kept = [sheet for name, sheet in sheets.items() if name not in set(skip_sheets)]
            table = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()
        else:
            table = pd.read_csv(path, dtype=text)
    except (ValueError, zipfile.BadZipFile) as err:
        raise InputError(path, f"cannot be read as a table ({' '.join(str(err).split())})") from None
    if table.empty:
        raise InputError(path, "holds no rows")
    table.columns = [str(c).strip() for c in table.columns]
    return table


def read_measurements(path: Path) -> pd.DataFrame:
    """A ``sonomuscle measure`` table (CSV, or its workbook's images and loop sheets) with empty text
    columns as ``""`` and a ``frame`` column (NaN for still images)."""
    rows = read_table(path, skip_sheets=("summary",))
    if "image" not in rows:
        raise InputError(path, "has no `image` column (is it a `sonomuscle measure` table?)")
    for column in ("flags", "error", "units"):
        rows[column] = rows[column].fillna("") if column in rows else ""
    rows["frame"] = _frames(rows["frame"], path) if "frame" in rows else np.nan
    rows["image"] = rows["image"].fillna("")
    _unique(rows, ["image", "frame"], path)
    return rows


def read_observers(
    path: Path,
    image_column: str | None = None,
    observer_column: str = "observer",
    frame_column: str = "frame",
) -> pd.DataFrame:
    """The observers' long table with its columns renamed to ``image``, ``observer`` and ``frame``."""
    table = read_table(path)
    if image_column is None:
        image_column = next((c for c in IMAGE_COLUMNS if c in table), None)
        if image_column is None:
            raise InputError(
                path, f"no image column ({', '.join(IMAGE_COLUMNS)}); name it with --image-column"
            )
    for column, option in ((image_column, "--image-column"), (observer_column, "--observer-column")):
        if column not in table:
            raise InputError(
                path, f"has no column {column!r} (columns: {', '.join(table.columns)}; see {option})"
            )
    renamed = {image_column: "image", observer_column: "observer", frame_column: "frame"}
    # a column already named like a renamed one (`image` beside `file`) makes way
    clashing = [new for new in renamed.values() if new in table and new not in renamed]
    table = table.drop(columns=clashing).rename(columns=renamed)
    table["frame"] = _frames(table["frame"], path) if "frame" in table else np.nan
    for column in ("image", "observer"):
        empty = table[column].isna() | (table[column].astype(str).str.strip() == "")
        if empty.any():
            raise InputError(path, f"row {_row(empty.idxmax())} has no {column}")
        table[column] = table[column].astype(str).str.strip()
    _unique(table, ["image", "frame", "observer"], path)
    return table


def match_names(measured: Iterable[str], observed: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Observed name → measured path for names sharing the longest trailing run of path parts (at least the
    file name) with one measured path, and that path's closest name; and name → why, for those that are not
    (ambiguous or unknown), measured paths included."""
    measured, observed = list(dict.fromkeys(measured)), list(dict.fromkeys(observed))
    by_file: dict[str, list[str]] = defaultdict(list)
    for path in measured:
        by_file[_parts(path)[-1]].append(path)
    scores: dict[str, dict[str, int]] = {}  # observed name → {measured path: common suffix length}
    for name in observed:
        scores[name] = {path: _common_suffix(name, path) for path in by_file.get(_parts(name)[-1], [])}
    best = {name: _best(candidates) for name, candidates in scores.items()}
    claims: dict[str, dict[str, int]] = defaultdict(dict)  # measured path → {name: suffix length}
    for name, paths in best.items():
        for path in paths:
            claims[path][name] = scores[name][path]
    pairs, problems = {}, {}
    for name, paths in best.items():
        if not paths:
            problems[name] = "no measurement of this image"
        elif len(paths) > 1:
            problems[name] = f"ambiguous: matches {', '.join(paths)}"
        elif _best(claims[paths[0]]) != [name]:
            rivals = [n for n in _best(claims[paths[0]]) if n != name]
            problems[name] = f"ambiguous: {paths[0]} is also matched by {', '.join(rivals)}"
        else:
            pairs[name] = paths[0]
    paired = set(pairs.values())
    for path in measured:
        if path not in paired:
            rivals = list(claims.get(path, {}))
            problems[path] = (
                f"ambiguous: matched by {', '.join(rivals)}" if rivals else "not rated by the observers"
            )
    return pairs, problems


def match_items(
    rows: pd.DataFrame, ratings: pd.DataFrame
) -> tuple[pd.DataFrame, dict[tuple[str, int | None], int], pd.DataFrame]:
    """The measurement rows that observers rated (index 0..n-1), the observers' (name, frame) → that row,
    and every unmatched item of either table with the reason."""
    pairs, problems = match_names(rows["image"], ratings["image"])
    measured = {key: i for i, key in enumerate(_keys(rows))}
    loops = set(rows.loc[rows["frame"].notna(), "image"])
    item_of, unmatched = {}, []
    for name, frame in dict.fromkeys(_keys(ratings)):
        path = pairs.get(name)
        if path is None:
            unmatched.append(("observers", name, frame, problems[name]))
        elif (path, frame) in measured:
            item_of[name, frame] = measured[path, frame]
        elif frame is None and path in loops:
            unmatched.append(("observers", name, frame, f"no frame given, but {path} was measured as a loop"))
        else:
            unmatched.append(("observers", name, frame, f"{path}: this frame was not measured"))
    rated = set(item_of.values())
    for (path, frame), i in measured.items():
        if i not in rated:
            unmatched.append(("measurements", path, frame, problems.get(path, "not rated by the observers")))
    order = sorted(rated)
    name_of = {i: name for (name, _), i in item_of.items()}
    matched = rows.iloc[order].reset_index(drop=True)
    matched.insert(1, "observers_image", [name_of[i] for i in order])
    renumber = {old: new for new, old in enumerate(order)}
    item_of = {key: renumber[i] for key, i in item_of.items()}
    return matched, item_of, pd.DataFrame(unmatched, columns=["table", "image", "frame", "problem"])


def ratings_table(ratings: pd.DataFrame, column: str) -> pd.DataFrame:
    """Items (image, frame) × observers of one column of the observers' long table."""
    return ratings.pivot(index=["image", "frame"], columns="observer", values=column)


def human_spread(ratings: pd.DataFrame) -> list[dict]:
    """Each observer against the mean of the others on the items both rated, then the ``HUMANS`` row: the
    mean of those statistics, over the items at least two observers rated. Empty with fewer than two."""
    if ratings.shape[1] < 2:
        return []
    rows = [
        {"comparison": f"observer {name} vs the others"} | agreement(ratings[name], _others(ratings, name))
        for name in ratings.columns
    ]
    n = int((ratings.notna().sum(axis=1) >= 2).sum())
    summary = {"comparison": HUMANS, "n": n, "n_dropped": len(ratings) - n}
    summary |= {key: float(np.nanmean([row[key] for row in rows])) for key in STAT_KEYS if key != "r_p"}
    summary |= {"r_p": math.nan, "reason": None}
    return [*rows, summary]


def software_agreement(software: pd.Series, ratings: pd.DataFrame) -> dict:
    """The software against the observers' mean, item by item."""
    return agreement(software, ratings.mean(axis=1))


def agreement_table(result: Agreement) -> pd.DataFrame:
    """One row per measure and comparison: the software (all, then unflagged results), each observer
    against the others and their mean; the software rows carry the human MAE, the ratio and the verdict."""
    clean = _unflagged(result.matched)
    rows = []
    for m in result.measures:
        humans = human_spread(m.ratings)
        clean_humans = human_spread(m.ratings[clean])
        for comparison, software, spread in (
            (SOFTWARE, software_agreement(m.software, m.ratings), humans),
            (SOFTWARE_UNFLAGGED, software_agreement(m.software[clean], m.ratings[clean]), clean_humans),
        ):
            rows.append(
                {"measure": m.name, "comparison": comparison, "units": m.units}
                | software
                | _verdict(software, spread)
            )
        rows += [{"measure": m.name, "comparison": r.pop("comparison"), "units": m.units} | r for r in humans]
    return pd.DataFrame(rows)


def range_table(result: Agreement, bins: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """Per measure and range of the reference (the observers' mean): n, bias and MAE of the software, and
    of the observers against the others (pooled over observers)."""
    rows = []
    for m in result.measures:
        reference = m.reference
        edges = _edges(bins.get(m.name), reference, m.units == DEGREES)
        if not edges:
            continue
        bin_of = pd.Series(pd.cut(reference, edges, include_lowest=True, labels=False), index=reference.index)
        groups = [
            (f"{format_quantity(lower)}–{format_quantity(upper)}", lower, upper, bin_of == i)
            for i, (lower, upper) in enumerate(itertools.pairwise(edges))
        ]
        outside = bin_of.isna() & reference.notna()
        if outside.any():
            groups.append((f"outside {edges[0]:g}–{edges[-1]:g}", math.nan, math.nan, outside))
        humans = _human_differences(m.ratings)
        for label, lower, upper, inside in groups:
            stats = _range_stats(m.software[inside] - reference[inside], humans[inside])
            rows.append({"measure": m.name, "range": label, "lower": lower, "upper": upper} | stats)
    return pd.DataFrame(rows, columns=RANGE_COLUMNS)


def flag_table(result: Agreement, large_angle: float, large_length: float) -> pd.DataFrame:
    """Per measure: of the results with a large error, how many are flagged; of the others, how many."""
    flagged = ~_unflagged(result.matched)
    rows = []
    for m in result.measures:
        reference = m.reference
        error = (m.software - reference).abs()
        angle = m.units == DEGREES
        limit = large_angle if angle else large_length / 100 * reference.abs()
        large, valued = error > limit, error.notna()
        rows.append(
            {
                "measure": m.name,
                "large_error": f"> {large_angle:g}{DEGREES}"
                if angle
                else f"> {large_length:g} % of the reference",
                "n_large": int(large.sum()),
                "large_flagged": int((large & flagged).sum()),
                "n_others": int((valued & ~large).sum()),
                "others_flagged": int((valued & ~large & flagged).sum()),
                "n_no_value": int((~valued).sum()),
                "no_value_flagged": int((~valued & flagged).sum()),
            }
        )
    return pd.DataFrame(rows)


def worst_table(result: Agreement, n: int) -> pd.DataFrame:
    """The ``n`` items per measure farthest from the observers' mean, with every value and the overlay."""
    frames = []
    folder = result.measurements.parent
    for m in result.measures:
        difference = m.software - m.reference
        order = difference.abs().dropna().sort_values(ascending=False).index[:n]
        rows = result.matched.loc[order]
        table = pd.DataFrame(
            {
                "measure": m.name,
                "image": rows["image"],
                "frame": rows["frame"],
                "units": m.units,
                "software": m.software[order],
            }
        )
        table = table.join(m.ratings.loc[order].add_prefix("observer "))
        table["observers_mean"] = m.reference[order]
        table["difference"] = difference[order]
        table["flags"] = rows["flags"]
        table["error"] = rows["error"]
        table["overlay"] = [
            _overlay(folder, image, frame) for image, frame in zip(rows["image"], rows["frame"], strict=True)
        ]
        frames.append(table)
    return _without_empty_frames(pd.concat(frames, ignore_index=True))


def matched_table(result: Agreement) -> pd.DataFrame:
    """The joined per-item table: the measurement row's identity, then per measure the software's value,
    the observers' mean, the difference and each observer's value."""
    keep = [
        c for c in ("image", "frame", "observers_image", "units", "flags", "error") if c in result.matched
    ]
    table = result.matched[keep].copy()
    for m in result.measures:
        table[m.name] = m.software
        table[f"{m.name}_observers_mean"] = m.reference
        table[f"{m.name}_difference"] = m.software - m.reference
        table = table.join(m.ratings.add_prefix(f"{m.name}_by_"))
    return _without_empty_frames(table)


def write_outputs(result: Agreement, out: Path) -> Path:
    """The CSV tables and ``report.html`` in ``out``, each written atomically; returns the report."""
    for name, table in (
        ("agreement", result.agreement),
        ("by_range", result.by_range),
        ("worst", result.worst),
        ("flags", result.flags),
        ("matched", matched_table(result)),
        ("unmatched", result.unmatched),
    ):
        atomic_write_with(
            out / f"{name}.csv", lambda p, t=table: t.to_csv(p, index=False, float_format="%.6g")
        )
    return write_report(result, out)


def write_report(result: Agreement, out: Path) -> Path:
    """``report.html``: verdicts, agreement, flags, then per measure the Bland–Altman plots, errors by range
    and the worst items with their overlays; the unmatched items and warnings last."""
    n_unmatched = result.unmatched["table"].value_counts()
    parts = [
        "<h1>Agreement with observers</h1>",
        f"<p>Measurements {html.escape(str(result.measurements))} against the observers in "
        f"{html.escape(str(result.observers))}: {len(result.matched)} matched item(s); "
        f"{n_unmatched.get('measurements', 0)} measured and {n_unmatched.get('observers', 0)} rated item(s) "
        "unmatched (listed below). The software is compared with the observers' mean, each observer with the "
        "mean of the others (the human spread); verdict: the software's MAE at most "
        f"{VERDICT_FACTOR:g}× the mean human MAE on the same items. Flagged and failed results are "
        "included; the unflagged rows leave them out.</p>",
        "<h2>Verdict</h2>",
        _verdict_table(result.agreement).to_html(index=False, na_rep="–"),
        agreement_html(
            result.agreement[["measure", "comparison", "units", "n", "n_dropped", *STAT_KEYS, "reason"]],
            title="Agreement",
        ),
        "<h2>Do the flags catch the large errors?</h2>",
        "<p>Results whose distance to the observers' mean exceeds the threshold, and how many of them carry a "
        "flag or an error; the same for the others (false alarms) and for results without a value.</p>",
        result.flags.to_html(index=False),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the plots recompute statistics whose warnings are listed already
        for m in result.measures:
            parts += [
                f"<h2>{html.escape(m.name)} (observers' {html.escape(m.column)})</h2>",
                embedded_figure(_bland_altman_figure(m)),
            ]
            ranges = result.by_range[result.by_range["measure"] == m.name]
            if len(ranges):
                parts += [
                    "<h3>Errors by range of the observers' mean</h3>",
                    "<p>The observers' differences to the others are pooled; their bias is 0 wherever every "
                    "observer rated every item.</p>",
                    ranges.drop(columns="measure").to_html(
                        index=False, na_rep="–", float_format=format_quantity
                    ),
                    embedded_figure(_range_figure(m, ranges)),
                ]
            parts += [
                "<h3>Worst items</h3>",
                _worst_html(result.worst[result.worst["measure"] == m.name], out),
            ]
    unmatched = result.unmatched
    parts += [
        f"<h2>Unmatched items ({len(unmatched)})</h2>",
        unmatched.to_html(index=False, na_rep="")
        if len(unmatched)
        else "<p>None: every item was matched.</p>",
        warnings_html(result.warnings),
    ]
    return write_page(out / "report.html", "sonomuscle agreement", parts)


def summary_lines(result: Agreement, out: str | os.PathLike) -> list[str]:
    """What ``sonomuscle agreement`` prints: unmatched counts, per measure the software against the human
    spread and the verdict, where the report is."""
    lines = [
        f"{counted(n, 'item')} of the {table} not matched (unmatched.csv)"
        for table, n in result.unmatched["table"].value_counts().sort_index().items()
    ]
    table = result.agreement
    for m in result.measures:
        rows = table[table["measure"] == m.name].set_index("comparison")
        sw = rows.loc[SOFTWARE]
        line = (
            f"{m.name} ({m.units}): software n={sw['n']}, bias {format_quantity(sw['bias'])}, "
            f"MAE {format_quantity(sw['mae'])}, ICC {format_fraction(sw['icc'])}"
        )
        if HUMANS in rows.index:
            humans = rows.loc[HUMANS]
            line += f"; humans MAE {format_quantity(humans['mae'])}, ICC {format_fraction(humans['icc'])}"
        lines.append(f"{line}; {sw['verdict']}")
    lines.append(
        f"report → {Path(out) / 'report.html'} (tables agreement.csv, by_range.csv, worst.csv, matched.csv)"
    )
    return [f"sonomuscle agreement: {line}" for line in lines]


def _verdict(software: dict, spread: list[dict]) -> dict:
    """The human MAE, the software's MAE as a multiple of it, and pass/fail against ``VERDICT_FACTOR``."""
    human = spread[-1]["mae"] if spread else math.nan
    if not spread:
        why = "no human spread: fewer than 2 observers"
    elif not math.isfinite(software["mae"]):
        why = f"none: {software['reason']}"
    elif not human > 0:
        why = "none: the observers agree exactly"
    else:
        ratio = software["mae"] / human
        why = f"{'pass' if ratio <= VERDICT_FACTOR else 'fail'}: MAE {ratio:.2f}× the human MAE"
        return {"human_mae": human, "mae_ratio": ratio, "verdict": why}
    return {"human_mae": human, "mae_ratio": math.nan, "verdict": why}


def _verdict_table(table: pd.DataFrame) -> pd.DataFrame:
    software = table[table["comparison"].isin((SOFTWARE, SOFTWARE_UNFLAGGED))]
    return pd.DataFrame(
        {
            "measure": software["measure"],
            "results": software["comparison"].map({SOFTWARE: "all", SOFTWARE_UNFLAGGED: "unflagged"}),
            "units": software["units"],
            "n": software["n"],
            "software MAE": software["mae"].map(format_quantity),
            "human MAE": software["human_mae"].map(format_quantity),
            "verdict": software["verdict"],
        }
    )


def _bland_altman_figure(m: Measure) -> Figure:
    """The software against the observers' mean, then each observer against the others."""
    panels = [(m.software, m.reference, ("software", "observers' mean"))]
    panels += [(m.ratings[o], _others(m.ratings, o), (str(o), "the others")) for o in m.ratings.columns]
    columns = min(len(panels), 3)
    rows = math.ceil(len(panels) / columns)
    fig = Figure(figsize=(5 * columns, 4 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax, (pred, ref, names) in zip(axes, panels, strict=False):
        title = f"{m.name}: {names[0]} vs {names[1]}"
        bland_altman_plot(pred, ref, ax, units=m.units, title=title, names=names)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    return fig


def _range_figure(m: Measure, ranges: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(7, 3.5), layout="constrained")
    errors_by_range_plot(
        list(ranges["range"]),
        {"software": ranges["mae"], "observers vs the others": ranges["mae_humans"]},
        fig.subplots(),
        units=m.units,
        title=f"{m.name}: errors by range of the observers' mean",
    )
    return fig


def _worst_html(worst: pd.DataFrame, out: Path) -> str:
    """The worst items as a table, each with its overlay's thumbnail linked to the overlay."""
    if not len(worst):
        return "<p>None: no item has both a software value and an observers' mean.</p>"
    shown = pd.DataFrame(index=worst.index)
    for column in worst.columns.drop(["measure", "overlay"]):
        values = worst[column]
        shown[column] = (
            values.map(format_quantity) if values.dtype.kind == "f" else values.astype(str).map(html.escape)
        )
    shown["overlay"] = [_thumbnail(Path(path), out) if path else "" for path in worst["overlay"]]
    return shown.to_html(index=False, escape=False, na_rep="–")


def _thumbnail(path: Path, out: Path) -> str:
    href = Path(os.path.relpath(path.resolve(), out.resolve())).as_posix()
    if path.suffix.lower() == ".mp4":
        return f'<a href="{html.escape(href)}">{html.escape(path.name)}</a>'
    return linked_thumbnail(path, href, path.name)


def _overlay(folder: Path, image: str, frame: float) -> str:
    """The overlay ``sonomuscle measure`` wrote beside its table (JPEG per image, mp4 per loop), if any."""
    path = folder / f"{stem_of(image)}_overlay.{'jpg' if pd.isna(frame) else 'mp4'}"
    return str(path) if path.is_file() else ""


def _units(
    matched: pd.DataFrame,
    measure: str,
    column: str,
    spacing: float | None,
    measurements: Path,
    observers: Path,
) -> tuple[str, float]:
    """The compared unit and the factor that brings the observers' column into it. Angles (a measure named
    ``*angle*``) are in degrees; lengths in the measurements' unit, the observers' pixels turned into mm by
    ``spacing``; a column named ``*_px`` or ``*_mm`` says its unit."""
    if "angle" in measure:
        return DEGREES, 1.0
    units = sorted(set(matched["units"]) - {""})
    if len(units) > 1:
        counts = ", ".join(f"{n} in {u}" for u, n in matched["units"].value_counts().items() if u)
        raise InputError(measurements, f"the matched rows mix units ({counts}); compare mm and px separately")
    mine = units[0] if units else ""
    theirs = "px" if column.endswith("_px") else "mm" if column.endswith("_mm") else ""
    if spacing is not None:
        if mine != "mm":
            raise InputError(
                measurements,
                f"{measure} is in {mine or 'unknown units'}, not mm: --observer-spacing converts the observers' pixels to mm; leave it out",
            )
        if theirs == "mm":
            return "mm", 1.0
        return "mm", spacing
    if mine == "mm" and theirs == "px":
        raise InputError(
            observers,
            f"column {column} is in pixels but {measure} is in mm; give --observer-spacing MM (mm per pixel)",
        )
    if mine == "px" and theirs == "mm":
        raise InputError(
            measurements,
            f"{measure} is in pixels but the observers' {column} is in mm; measure with --spacing or --depth",
        )
    return mine or theirs, 1.0


def _shared_columns(
    rows: pd.DataFrame, ratings: pd.DataFrame, measurements: Path, observers: Path
) -> dict[str, str]:
    """Measure → observers' column for every column both tables have (names, not ids); one line if none."""
    shared = [c for c in rows.columns if c in ratings.columns and c not in ID_COLUMNS]
    if not shared:
        raise InputError(
            observers, f"no measure column shared with {measurements}; give --map MEASURE=COLUMN"
        )
    return {c: c for c in shared}


def _numeric(table: pd.DataFrame, column: str, path: Path) -> None:
    """``column`` as floats in place; missing or holding text (other than empty cells) is one line."""
    if column not in table:
        raise InputError(path, f"has no column {column!r} (columns: {', '.join(map(str, table.columns))})")
    values = pd.to_numeric(table[column], errors="coerce")
    text = values.isna() & table[column].notna() & (table[column].astype(str).str.strip() != "")
    if text.any():
        raise InputError(
            path,
            f"column {column} holds {table[column][text].iloc[0]!r} (row {_row(text.idxmax())}), not a number",
        )
    table[column] = values.astype(float)


def _frames(frames: pd.Series, path: Path) -> pd.Series:
    """Frame numbers as floats (NaN for still images); anything but whole numbers is one line."""
    values = pd.to_numeric(frames, errors="coerce")
    bad = (values.isna() & frames.notna()) | (values.notna() & (values % 1 != 0))
    if bad.any():
        raise InputError(
            path, f"frame {frames[bad].iloc[0]!r} (row {_row(bad.idxmax())}) is not a whole number"
        )
    return values.astype(float)


def _unique(table: pd.DataFrame, key: list[str], path: Path) -> None:
    repeated = table.duplicated(key, keep=False)
    if repeated.any():
        first = table[repeated].iloc[0]
        what = ", ".join(f"{c} {first[c]}" for c in key if not pd.isna(first[c]))
        raise InputError(path, f"{what} appears in {repeated.sum()} rows; keep one")


def _keys(table: pd.DataFrame) -> list[tuple[str, int | None]]:
    return [
        (image, None if pd.isna(frame) else int(frame))
        for image, frame in zip(table["image"], table["frame"], strict=True)
    ]


def _row(index: int) -> int:
    """The spreadsheet row of a table index (the header is row 1)."""
    return int(index) + 2


def _parts(name: str) -> tuple[str, ...]:
    return PurePosixPath(str(name).replace("\\", "/")).parts or ("",)


def _common_suffix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(reversed(_parts(a)), reversed(_parts(b)), strict=False):
        if x != y:
            break
        n += 1
    return n


def _best(scores: Mapping[str, int]) -> list[str]:
    top = max(scores.values(), default=0)
    return [key for key, score in scores.items() if score == top] if top else []


def _without_empty_frames(table: pd.DataFrame) -> pd.DataFrame:
    """Tables of still images only need no ``frame`` column."""
    return table.drop(columns="frame") if table["frame"].isna().all() else table


def _unflagged(matched: pd.DataFrame) -> pd.Series:
    return (matched["flags"] == "") & (matched["error"] == "")


def _others(ratings: pd.DataFrame, name: str) -> pd.Series:
    """The mean of the observers other than ``name``, per item."""
    return ratings.drop(columns=name).mean(axis=1)


def _human_differences(ratings: pd.DataFrame) -> pd.DataFrame:
    """Each observer minus the mean of the others, per item (NaN where either is missing)."""
    return pd.DataFrame({name: ratings[name] - _others(ratings, name) for name in ratings.columns})


def _range_stats(software: pd.Series, humans: pd.DataFrame) -> dict:
    software, pooled = software.dropna(), humans.stack().dropna()
    return {
        "n": len(software),
        "bias": software.mean(),
        "mae": software.abs().mean(),
        "n_humans": len(pooled),
        "bias_humans": pooled.mean(),
        "mae_humans": pooled.abs().mean(),
    }


def _edges(given: Sequence[float] | None, reference: pd.Series, angle: bool) -> list[float]:
    """Range edges: given, else ``ANGLE_BINS`` for angles and the reference's quartiles for lengths."""
    if given is not None:
        return sorted({float(e) for e in given})
    if angle:
        return list(ANGLE_BINS)
    quartiles = sorted(set(reference.dropna().quantile([0, 0.25, 0.5, 0.75, 1]).tolist()))
    return quartiles if len(quartiles) > 1 else []  # no ranges in fewer than two distinct values
