"""``sonomuscle measure``: muscle architecture of images, folders, cine loops and videos with a trained bundle.

Runs the bundle's own ``inference.json`` (network, transforms, measures and overlays; no second copy of
the pipeline) over a datalist made from the given paths; videos and multi-frame DICOMs are measured frame
by frame (every ``step``-th). Calibration, in this order of trust, is recorded per result in the
``calibration`` column: the file's own (DICOM ultrasound regions); ``--spacing`` (mm per pixel);
``--depth`` (the imaged depth the scanner displays, over the rows of the ultrasound picture); otherwise
none, and lengths are in pixels. The ultrasound picture is cropped out of a screen capture automatically
(:mod:`sonomuscle.transforms.crop`), or to the ``--crop`` box (which ``--depth`` then measures). A file or frame that cannot be measured is reported on one line and
skipped; the others are measured. Over the frames of a loop each measure is also smoothed without lag
(:mod:`sonomuscle.measures.temporal`). A ``flags`` column says which results to check by eye
(:mod:`sonomuscle.measures.plausibility`, plus jumps between frames).

Outputs in ``out``: ``measurements.csv``, ``measurements.xlsx`` (a sheet for the images, one per loop,
and a summary), overlays (JPEG per image, mp4 per loop), a time-course plot per loop and ``report.html``.
"""

from __future__ import annotations

import html
import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from openpyxl import Workbook

from sonomuscle.bundle import calibration_entry, run_config
from sonomuscle.data import stream
from sonomuscle.data.readers import stem_of
from sonomuscle.data.stream import input_files
from sonomuscle.errors import InputError
from sonomuscle.evaluation.report import embedded_figure, embedded_picture, linked_thumbnail, write_page
from sonomuscle.handlers.architecture import MEASURES
from sonomuscle.io import atomic_write_json, atomic_write_with
from sonomuscle.measures.plausibility import QCThresholds, quality_flags
from sonomuscle.measures.temporal import smooth_series
from sonomuscle.workflows import bundle_dir, run_bundle

DEFAULT_BUNDLE = "muscle_architecture_2d"
TIME_MEASURES = ("thickness", "pennation_angle", "fascicle_length")  # smoothed and plotted over a loop
# drawn as distributions in the report, flagged results apart
DISTRIBUTION_MEASURES = (
    "thickness",
    "thickness_vertical",
    "pennation_angle",
    "pennation_angle_superficial",
    "fascicle_length",
)
TEXT_COLUMNS = ("image", "fascicle_direction", "units", "qc", "error", "calibration")


def measure(
    paths: list[str | os.PathLike],
    out: str | os.PathLike,
    spacing: float | None = None,
    depth: float | None = None,
    bundle: str | os.PathLike | None = None,
    overlays: bool = True,
    amp: bool = True,
    mirror: bool = True,
    step: int = 1,
    crop: tuple[int, int, int, int] | None = None,
    thickness_at: str | None = None,
    processes: int = 1,
) -> Path:
    """Measure every 2D image, cine loop and video in ``paths`` (files or folders); returns the CSV's path.

    ``amp``: mixed precision where the device does it natively (the bundle's ``amp``); off, float32.
    ``mirror``: average the network over the picture and its mirror image (the bundle's ``mirror_average``).
    ``thickness_at``: where to measure ``thickness_at``/``thickness_vertical_at`` besides the centre (a fraction
    of the width, or a pixel column such as ``120px``).
    ``processes``: run the bundle in that many processes under ``torchrun`` (one per GPU, or CPU processes
    sharing a many-core machine), each measuring its share of the inputs (``multi_gpu_inference.json``).
    """
    entry = calibration_entry(spacing, depth)
    if step < 1:
        raise InputError(None, f"--step must be ≥ 1, got {step}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = _files(paths)
    if not files:
        raise InputError(None, "nothing to measure: no image or video among the given paths")
    if crop is not None:
        entry["crop"] = list(crop)
    datalist = atomic_write_json(
        out / "measure_datalist.json", {"test": [{"image": str(f), **entry} for f in files]}
    )
    table = out / "measurements.csv"
    table.unlink(missing_ok=True)  # a previous run's rows must not pass for this run's
    bundle = Path(bundle) if bundle else bundle_dir(DEFAULT_BUNDLE)
    settings = {
        "datalist": str(datalist),
        "data_split": "test",
        "input_dir": None,
        "output_dir": str(out),
        "save_overlay": overlays,
        "amp": amp,
        "mirror_average": mirror,
        "frame_step": step,
        "thickness_at": thickness_at,
    }
    if processes > 1:
        if not (bundle / "configs" / "multi_gpu_inference.json").is_file():
            raise InputError(bundle, "has no configs/multi_gpu_inference.json: measure it in one process")
        run_bundle(str(bundle), ["inference", "multi_gpu_inference"], processes=processes, **settings)
    else:
        with _quiet(stream.logger):
            run_config(bundle, "inference", **settings)
    skipped = _skipped(out / "problems.csv")
    for reason in skipped:
        print(f"sonomuscle measure: skipped {reason}", file=sys.stderr)
    if not table.is_file():
        raise InputError(None, "nothing could be measured: every input was skipped (reasons above)")
    rows = with_time_courses(_read_rows(table))
    thresholds = QCThresholds.of_bundle(bundle)
    rows["flags"] = [
        "; ".join(filter(None, [*quality_flags(row, thresholds), row["jumps"]]))
        for row in rows.to_dict("records")
    ]
    rows = rows.drop(columns="jumps")
    atomic_write_with(table, lambda p: rows.to_csv(p, index=False, float_format="%.5g"))
    summary = summary_table(rows)
    write_workbook(rows, summary, out / "measurements.xlsx")
    write_measure_report(rows, summary, skipped, out)
    _report(rows, table)
    return table


def with_time_courses(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of loops get ``<measure>_smoothed`` columns, and ``jumps`` names the measures that jumped."""
    rows = rows.copy()
    rows["jumps"] = ""
    if "frame" not in rows:
        return rows
    for measure in TIME_MEASURES:
        rows[f"{measure}_smoothed"] = np.nan
    for _, loop in rows[rows["frame"].notna()].groupby("image", sort=False):
        loop = loop.sort_values("frame")
        for measure in TIME_MEASURES:
            smoothed, jumps = smooth_series(loop["time_s"].to_numpy(), loop[measure].to_numpy())
            rows.loc[loop.index, f"{measure}_smoothed"] = smoothed
            jumped = loop.index[jumps]
            rows.loc[jumped, "jumps"] = rows.loc[jumped, "jumps"].map(
                lambda text, m=measure: "; ".join(filter(None, [text, f"{m.replace('_', ' ')} jumped"]))
            )
    return rows


def write_workbook(rows: pd.DataFrame, summary: pd.DataFrame, path: Path) -> Path:
    """``images`` (rows of still images), one sheet per loop (its frames) and ``summary`` (per source and
    unit: n, mean, SD, median, range of each measure, and how many results are flagged); pixels and
    millimetres are never pooled, nor are different loops."""
    is_frame = rows["frame"].notna() if "frame" in rows else pd.Series(False, index=rows.index)
    sheets = {"images": rows[~is_frame].dropna(axis=1, how="all")} if (~is_frame).any() else {}
    for source, loop in rows[is_frame].groupby("image", sort=False):
        sheets[_sheet_name(stem_of(source), {*sheets, "images", "summary"})] = loop.sort_values("frame")
    sheets["summary"] = summary

    def write(target: Path) -> None:
        # openpyxl's streaming mode: a 20 000-frame loop's sheet is written row by row, not held whole
        # (pandas' writer held 200 MB more for it)
        book = Workbook(write_only=True)
        for name, sheet in sheets.items():
            page = book.create_sheet(name)
            page.append(list(sheet.columns))
            for row in sheet.astype(object).where(sheet.notna(), None).itertuples(index=False):
                page.append(list(row))
        book.save(target)

    return atomic_write_with(path, write)


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per source (``images`` or a loop's file name), unit and measure: count, mean, SD, median, range."""
    measured = rows[rows["error"] == ""].copy()
    loop = measured["frame"].notna() if "frame" in measured else pd.Series(False, index=measured.index)
    measured["source"] = np.where(loop, measured["image"].map(lambda p: Path(p).name), "images")
    summary = (
        measured.melt(id_vars=["source", "units"], value_vars=_measured(measured), var_name="measure")
        .groupby(["source", "units", "measure"], sort=False)["value"]
        .agg(n="count", mean="mean", sd="std", median="median", min="min", max="max")
        .reset_index()
    )
    flagged = measured.groupby(["source", "units"])["flags"].agg(lambda flags: int((flags != "").sum()))
    summary["results_flagged"] = [
        flagged[(s, u)] for s, u in zip(summary["source"], summary["units"], strict=True)
    ]
    return summary


def _measured(rows: pd.DataFrame) -> list[str]:
    """The measures of the table, less those at a place the user did not give (``--thickness-at``)."""
    return [m for m in MEASURES if not m.endswith("_at") or rows[m].notna().any()]


def write_measure_report(rows: pd.DataFrame, summary: pd.DataFrame, skipped: list[str], out: Path) -> Path:
    """``report.html``: what was measured, the summary, each loop's time course, flagged results, skipped inputs."""
    n_flagged = int((rows["flags"] != "").sum())
    parts = [
        "<h1>Muscle architecture</h1>",
        f"<p>{int((rows['error'] == '').sum())} of {len(rows)} result(s) measured, {n_flagged} flagged for a "
        f"look at the overlay, {len(skipped)} input(s) skipped. Calibration: "
        + ", ".join(f"{n} {html.escape(c)}" for c, n in rows["calibration"].value_counts().items())
        + " (lengths in pixels where it is <em>none</em>).</p>",
        "<h2>Summary</h2>",
        summary.to_html(index=False, na_rep="–", float_format="{:.3g}".format),
    ]
    if "frame" in rows:
        for source, loop in rows[rows["frame"].notna()].groupby("image", sort=False):
            figure = time_course_figure(loop.sort_values("frame"), Path(source).name)
            png = atomic_write_with(
                out / f"{stem_of(source)}_timecourse.png", lambda p, f=figure: f.savefig(p, dpi=90)
            )  # drawn once, embedded from the file
            parts += [
                f"<h2>{html.escape(Path(source).name)}</h2>",
                embedded_picture(png, f"{Path(source).name}: measures over time"),
            ]
    measured = rows[rows["error"] == ""]
    if len(measured) >= 2:
        parts += ["<h2>Distributions</h2>", embedded_figure(distribution_figure(measured))]
    flagged = rows[rows["flags"] != ""]
    parts += [
        f"<h2>Flagged results ({len(flagged)})</h2>",
        flagged_table(flagged, out) if len(flagged) else "<p>None.</p>",
        f"<h2>Skipped inputs ({len(skipped)})</h2>",
        "<ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in skipped) + "</ul>"
        if skipped
        else "<p>None.</p>",
    ]
    return write_page(out / "report.html", "sonomuscle measure", parts)


def distribution_figure(rows: pd.DataFrame) -> Figure:
    """A histogram per measure, flagged results stacked in red on the others: where the doubtful ones lie."""
    fig = Figure(figsize=(3.2 * len(DISTRIBUTION_MEASURES), 3.0), layout="constrained")
    axes = fig.subplots(1, len(DISTRIBUTION_MEASURES))
    flagged = rows["flags"] != ""
    for ax, measure in zip(axes, DISTRIBUTION_MEASURES, strict=True):
        values = [rows.loc[~flagged, measure].dropna(), rows.loc[flagged, measure].dropna()]
        if sum(map(len, values)):
            ax.hist(
                values, bins=20, stacked=True, color=["tab:blue", "tab:red"], label=["not flagged", "flagged"]
            )
        unit = "°" if "angle" in measure else "/".join(sorted(set(rows["units"])))
        ax.set_xlabel(f"{measure.replace('_', ' ')} ({unit})")
    axes[0].set_title(f"distributions of {len(rows)} results")
    axes[0].legend(fontsize="small")
    return fig


def flagged_table(flagged: pd.DataFrame, out: Path) -> str:
    """Flagged results as an HTML table: each with its overlay (a thumbnail linked to the picture, or a link to
    the loop's video), its flags and its values, so a user reviews them by looking."""
    measures = (
        "thickness",
        "pennation_angle",
        "pennation_angle_superficial",
        "fascicle_length",
        "n_fascicles",
    )
    head = "".join(f"<th>{h}</th>" for h in ("overlay", "image", "flags", *measures))
    body = []
    for row in flagged.to_dict("records"):
        stem = stem_of(row["image"])
        is_frame = "frame" in row and not pd.isna(row["frame"])
        if is_frame:
            overlay = f'<a href="{html.escape(stem)}_overlay.mp4">video, frame {int(row["frame"])}</a>'
        else:
            overlay = linked_thumbnail(out / f"{stem}_overlay.jpg", f"{stem}_overlay.jpg", stem, width=240)
        values = "".join(f"<td>{row.get(m, float('nan')):.4g}</td>" for m in measures)
        body.append(
            f"<tr><td>{overlay}</td><td>{html.escape(Path(row['image']).name)}</td>"
            f"<td>{html.escape(row['flags'])}</td>{values}</tr>"
        )
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def time_course_figure(loop: pd.DataFrame, title: str) -> Figure:
    """Each measure over time: per-frame values (dots), smoothed (line), flagged frames (red crosses)."""
    fig = Figure(figsize=(10, 7), layout="constrained")
    axes = fig.subplots(len(TIME_MEASURES), 1, sharex=True)
    units = loop["units"].iloc[0]
    flagged = loop["flags"] != ""
    for ax, measure in zip(axes, TIME_MEASURES, strict=True):
        ax.plot(loop["time_s"], loop[measure], ".", color="0.6", label="per frame")
        ax.plot(loop["time_s"], loop[f"{measure}_smoothed"], "-", color="tab:blue", label="smoothed")
        ax.plot(loop["time_s"][flagged], loop[measure][flagged], "x", color="tab:red", label="flagged")
        unit = "°" if measure == "pennation_angle" else units
        ax.set_ylabel(f"{measure.replace('_', ' ')} ({unit})")
    axes[0].set_title(f"{title}: measures over time")
    axes[0].legend(loc="best", fontsize="small")
    axes[-1].set_xlabel("time (s)")
    return fig


def _read_rows(table: Path) -> pd.DataFrame:
    rows = pd.read_csv(table, dtype={c: str for c in TEXT_COLUMNS})
    for column in TEXT_COLUMNS:
        if column in rows:
            rows[column] = rows[column].fillna("")
    return rows


def _sheet_name(stem: str, taken: set[str]) -> str:
    """An Excel sheet name (≤ 31 characters, none of []:*?/\\) not yet taken."""
    base = re.sub(r"[\[\]:*?/\\]", "_", stem)[:28] or "loop"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}~{n}"
    return name


@contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """Keep ``logger``'s lines off the log during the block: measure prints them itself, once, at the end."""
    propagate = logger.propagate
    logger.propagate = False
    try:
        yield
    finally:
        logger.propagate = propagate


def _skipped(problems: Path) -> list[str]:
    """``<input>: <reason>`` of each input the run skipped (the bundle's ``problems.csv``, if any)."""
    if not problems.is_file():
        return []
    table = pd.read_csv(problems, keep_default_na=False)
    return [f"{row.input}: {row.problem}" if row.input else row.problem for row in table.itertuples()]


def _files(paths: list[str | os.PathLike]) -> list[Path]:
    """Files as given, and the image and video files in given folders (sorted), each once; a missing path
    is reported."""
    files: dict[Path, None] = {}
    for path in map(Path, paths):
        if path.is_dir():
            files.update(dict.fromkeys(f.resolve() for f in input_files(path)))
        elif path.exists():
            files[path.resolve()] = None
        else:
            print(f"sonomuscle measure: skipped {path}: not found", file=sys.stderr)
    return list(files)


def _report(rows: pd.DataFrame, table: Path) -> None:
    """What a user needs to read next: how many were measured, where, and whether lengths are pixels."""
    measured = int((rows["error"] == "").sum())
    print(f"sonomuscle measure: {measured} of {len(rows)} result(s) measured → {table}")
    print(f"sonomuscle measure: report → {table.parent / 'report.html'}")
    flagged = int((rows["flags"] != "").sum())
    if flagged:
        print(f"sonomuscle measure: {flagged} result(s) flagged for a look at the overlay (column `flags`)")
    uncalibrated = int((rows["calibration"] == "none").sum())
    if uncalibrated:
        print(
            f"sonomuscle measure: {uncalibrated} result(s) without calibration: lengths are in PIXELS "
            "(give --spacing MM or --depth MM)"
        )
