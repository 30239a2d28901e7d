"""Batch evaluation of a folder of predicted masks against reference masks (``sonomuscle evaluate``).

Pairing of predictions with references: :mod:`sonomuscle.evaluation.pairing`.

Classes of label maps: ``labels`` ({class name: label value}), else the prediction folder's ``classes.json`` (the same
``{"name": value, ...}``, as a bundle can write it beside its label maps), else ``label_<v>`` for every
non-zero value of each reference.

Measures: Dice (with precision and recall), HD95, ASSD and size (area in 2D, volume in 3D) of every class,
and with ``images`` its echo intensity (mean grey value of the image inside the mask; muscle quality).
Local thickness means something only for a layer, not for a filled structure (a bladder lumen, a fascicle
mask), so by default it is computed for classes whose name contains "wall", and for every class only when
``measures`` lists ``thickness``. In ``cases.csv`` distances (``hd95``, ``assd``, thickness) are in the row's
``units`` (px or mm), ``area_*`` in units², ``volume_*`` in units³; size and thickness columns no case
filled are left out. Warnings a case raises go to its rows' ``warnings`` column and the report, not stderr.

Cases stream one at a time (read, compute, append CSV rows, drop), so memory stays flat however many cases
there are; ``workers > 1`` maps cases over a process pool in order, so the CSV is the same. Rows go to
``cases.partial.csv`` as they are computed (a crash loses nothing; the next run resumes from it) and the
finished table is published atomically as ``cases.csv``. A case that cannot be evaluated is recorded with
its reason and the run goes on.
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from sonomuscle.classes import CLASSES_FILE, check_classes
from sonomuscle.data.readers import load_image
from sonomuscle.errors import InputError, positive_mm
from sonomuscle.evaluation.pairing import (
    Case,
    Pair,
    by_name,
    case_name,
    counted,
    mask_files,
    nothing_paired,
    pair_cases,
    reference_folders,
    unpaired_counts,
)
from sonomuscle.evaluation.report import Overlay, collected_warnings, summarise, write_report
from sonomuscle.io import atomic_write_json, atomic_write_with
from sonomuscle.measures.area import area, echo_intensity, volume
from sonomuscle.measures.thickness import thickness_summary
from sonomuscle.metrics.segmentation import segmentation_metrics

ALL_MEASURES = ("dice", "hd95", "assd", "volume", "thickness", "echo")
OVERLAP_MEASURES = ("dice", "hd95", "assd")
WALL_WORD = "wall"
SPACING_RTOL = 1e-3
N_OVERLAYS = 6

# columns each requested measure adds to cases.csv
MEASURE_COLUMNS = {
    "dice": ("dice", "precision", "recall"),
    "hd95": ("hd95",),
    "assd": ("assd",),
    "volume": ("area_pred", "area_ref", "volume_pred", "volume_ref"),
    "thickness": (
        "thickness_mean_pred",
        "thickness_mean_ref",
        "thickness_median_pred",
        "thickness_median_ref",
    ),
    "echo": ("echo_pred", "echo_ref"),
}
OPTIONAL_COLUMNS = MEASURE_COLUMNS["volume"] + MEASURE_COLUMNS["thickness"] + MEASURE_COLUMNS["echo"]
BASE_COLUMNS = (
    "case",
    "class",
    "status",
    "problem",
    "flag",
    "warnings",
    "ndim",
    "units",
    "pred_file",
    "ref_file",
)


@dataclass(frozen=True)
class Settings:
    """What each case is scored on; passed to worker processes."""

    classes: dict[str, int] | None  # label maps' class names and values; None: every value of the reference
    measures: tuple[str, ...]
    thickness_everywhere: bool  # thickness for every class, not only for walls
    spacing: float | None = None  # mm per pixel/voxel for pairs whose files carry none
    images: dict[str, Path] | None = None  # case name → its image, for echo intensity


def evaluate_folder(
    pred: Path,
    ref: Path | Mapping[str, Path],
    out: Path,
    labels: Mapping[str, int] | None = None,
    measures: Sequence[str] | None = None,
    workers: int = 1,
    images: Path | None = None,
    spacing: float | None = None,
) -> dict:
    """Evaluate every case; write ``cases.csv``, ``summary.json``, ``agreement.csv`` and ``report.html``.

    ``ref`` is one folder or ``{structure: folder}`` (see the module's pairing rules); ``labels`` maps class
    names to label values (``--classes``). ``measures`` defaults to all of them, thickness for wall classes
    only. ``images`` (paired by case name) are drawn under the worst cases' outlines. ``spacing`` (mm per
    pixel or voxel, the same along every axis) calibrates pairs whose files carry none, such as the PNG
    masks of a 2D inference run with ``--spacing``. Returns the summary written to ``summary.json``.
    """
    pred, out = Path(pred), Path(out)
    refs = reference_folders(ref)
    for folder in (pred, *refs.values(), *([] if images is None else [Path(images)])):
        if not folder.is_dir():
            raise InputError(folder, "not a folder")
    if spacing is not None:
        positive_mm("--spacing", spacing)
    settings = _settings(pred, labels, measures, spacing, images)
    cases = pair_cases(pred, ref)
    if not any(case.pairs for case in cases):
        raise InputError(None, nothing_paired(pred, refs))

    table = _evaluated_table(cases, settings, out, workers)
    summary, agreement_table = summarise(table, settings.measures)
    summary |= unpaired_counts(cases)
    with collected_warnings(summary["warnings"]):
        overlays = _worst_overlays(table, cases, settings)
    atomic_write_json(out / "summary.json", summary)
    atomic_write_with(
        out / "agreement.csv", lambda tmp: agreement_table.to_csv(tmp, index=False, float_format="%.6g")
    )
    write_report(out / "report.html", table, summary, agreement_table, overlays, images)
    return summary


def outcome(summary: dict, out: str | os.PathLike) -> str:
    """What ``sonomuscle evaluate`` prints: a line on what was left out, if anything; where the report is."""
    out = Path(out)
    n_other = len(summary["problems"]) - summary["n_without_prediction"] - summary["n_without_reference"]
    left_out = [
        counted(n, noun) + tail
        for n, noun, tail in (
            (summary["n_without_prediction"], "reference", " without a prediction"),
            (summary["n_without_reference"], "prediction", " without a reference"),
            (n_other, "other problem", ""),
        )
        if n
    ]
    report = (
        f"sonomuscle evaluate: {summary['n_evaluated']} cases evaluated → {out / 'report.html'} "
        f"(table {out / 'cases.csv'})"
    )
    if not left_out:
        return report
    return (
        f"{summary['n_evaluated']} cases evaluated, {', '.join(left_out)} (listed in report.html)\n{report}"
    )


def evaluate_case(task: tuple[Case, Settings]) -> list[dict]:
    """One case → a row per problem and per class of each pair; warnings raised go in column ``warnings``."""
    case, settings = task
    rows = [_skipped_row(case.name, problem, structure) for structure, problem in case.problems]
    for pair in case.pairs:
        messages: list[str] = []
        with collected_warnings(messages):
            pair_rows = _evaluate_pair(case.name, pair, settings)
        rows += [row | {"warnings": "; ".join(messages) or None} for row in pair_rows]
    return rows


def pair_classes(pair: Pair, ref: np.ndarray, classes: Mapping[str, int] | None) -> dict[str, int]:
    """A pair's classes: its structure (value 1), else ``classes``, else every value of the reference."""
    if pair.structure is not None:
        return {pair.structure: 1}
    if classes:
        return dict(classes)
    return {f"label_{v}": int(v) for v in np.unique(ref) if v != 0}


def load_pair(
    pred_path: Path, ref_path: Path, spacing: float | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[float, ...] | None]:
    """Read both label maps and check they describe the same grid; spacing comes from the reference, else
    the prediction (a bundle can save its label maps with the image's calibration), else ``spacing`` (mm
    along every axis), else none (pixels)."""
    ref, ref_spacing = load_image(ref_path, labels=True)
    pred, pred_spacing = load_image(pred_path, labels=True)
    if pred.shape != ref.shape:
        raise InputError(pred_path, f"shape mismatch: prediction {pred.shape}, reference {ref.shape}")
    if ref_spacing is None:
        ref_spacing = pred_spacing
    if ref_spacing is None:
        return pred, ref, None if spacing is None else (spacing,) * ref.ndim
    # a prediction saved without spacing (e.g. PNG) takes the reference's; one that has it must agree
    if pred_spacing is not None and not np.allclose(pred_spacing, ref_spacing, rtol=SPACING_RTOL, atol=0):
        raise InputError(
            pred_path,
            f"spacing mismatch: prediction {tuple(map(float, pred_spacing))}, "
            f"reference {tuple(map(float, ref_spacing))} mm",
        )
    return pred, ref, tuple(float(s) for s in ref_spacing)


def _settings(
    pred: Path,
    labels: Mapping[str, int] | None,
    measures: Sequence[str] | None,
    spacing: float | None,
    images: Path | None,
) -> Settings:
    unknown = sorted(set(measures or ()) - set(ALL_MEASURES))
    if unknown:
        raise InputError(None, f"unknown measures {unknown}; choose from {list(ALL_MEASURES)}")
    return Settings(
        classes=dict(labels) if labels else _classes_file(pred),
        measures=ALL_MEASURES if measures is None else tuple(measures),
        thickness_everywhere=measures is not None,
        spacing=spacing,
        images=None if images is None else _single_files(Path(images)),
    )


def _classes_file(pred: Path) -> dict[str, int] | None:
    """``{"name": value}`` from the prediction folder's classes.json, if there is one."""
    path = pred / CLASSES_FILE
    if not path.is_file():
        return None
    try:
        classes = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(path, f"cannot be read as JSON: {err}") from None
    return check_classes(classes, path)


def _evaluate_pair(case: str, pair: Pair, settings: Settings) -> list[dict]:
    """A row per class of one pair; bad input becomes a single ``skipped`` row with the reason."""
    try:
        pred, ref, spacing = load_pair(pair.pred, pair.ref, settings.spacing)
    except InputError as err:
        return [_skipped_row(case, str(err), pair.structure, pair)]
    classes = pair_classes(pair, ref, settings.classes)
    if not classes:
        problem = f"{pair.ref.name}: reference is empty, no class to evaluate"
        return [_skipped_row(case, problem, pair.structure, pair)]
    for side, path, labels in (("reference", pair.ref, ref), ("prediction", pair.pred, pred)):
        undeclared = sorted(set(np.unique(labels).tolist()) - {0, *classes.values()})
        if undeclared:  # said, since they are scored as background
            message = f"{path.name}: {side} values {undeclared} are not among the classes {classes}"
            warnings.warn(message, stacklevel=1)
    base = {
        "case": case,
        "ndim": ref.ndim,
        "units": "px" if spacing is None else "mm",
        "pred_file": pair.pred.name,
        "ref_file": pair.ref.name,
    }
    grey = (
        _case_image(case, settings.images, ref.shape, "no echo intensity") if _wants_echo(settings) else None
    )
    wants_overlap = set(OVERLAP_MEASURES) & set(settings.measures)
    overlap = segmentation_metrics(pred, ref, spacing, classes) if wants_overlap else {}
    rows = []
    for name, value in classes.items():
        scores = overlap.get(name, {})
        row = base | {"class": name, "status": "ok", "problem": None, "flag": scores.get("flag")}
        row |= {c: scores[c] for m in OVERLAP_MEASURES if m in settings.measures for c in MEASURE_COLUMNS[m]}
        row |= _shape_measures(pred == value, ref == value, spacing, settings, name)
        if grey is not None:
            row |= {
                "echo_pred": echo_intensity(grey, pred == value),
                "echo_ref": echo_intensity(grey, ref == value),
            }
        if (ref == value).any() and not (pred == value).any():
            row |= {"status": "flagged", "problem": "empty prediction", "flag": "empty_pred"}
        elif not (ref == value).any() and not (pred == value).any():  # nothing to agree on: not a Dice of 1
            row |= {c: None for c in MEASURE_COLUMNS["dice"]}
            row |= {
                "status": "flagged",
                "problem": f"no {name} (value {value}) in either mask",
                "flag": "absent",
            }
        rows.append(row)
    return rows


def _wants_echo(settings: Settings) -> bool:
    return "echo" in settings.measures and settings.images is not None


def _shape_measures(
    pred: np.ndarray, ref: np.ndarray, spacing, settings: Settings, name: str
) -> dict[str, float]:
    """Area (2D) or volume (3D) of one class, prediction and reference; thickness where it means something."""
    row: dict[str, float] = {}
    if "volume" in settings.measures:
        size, kind = (volume, "volume") if ref.ndim == 3 else (area, "area")
        row |= {f"{kind}_pred": float(size(pred, spacing)), f"{kind}_ref": float(size(ref, spacing))}
    if "thickness" in settings.measures and (settings.thickness_everywhere or WALL_WORD in name.lower()):
        for side, mask in (("pred", pred), ("ref", ref)):
            summary = thickness_summary(mask, spacing)  # NaN for an empty mask
            row[f"thickness_mean_{side}"] = float(summary["mean"])
            row[f"thickness_median_{side}"] = float(summary["median"])
    return row


def _worst_overlays(table: pd.DataFrame, cases: list[Case], settings: Settings) -> list[Overlay]:
    """Overlays of the lowest-Dice cases, reloaded one at a time; ``images`` go under them when given."""
    if "dice" not in table:
        return []
    scored = table[table["status"] != "skipped"].dropna(subset=["dice"])
    worst = scored.groupby("case", sort=False)["dice"].min().nsmallest(N_OVERLAYS)
    by_name = {case.name: case for case in cases}
    return [
        _case_overlay(by_name[name], dice, set(scored.loc[scored["case"] == name, "pred_file"]), settings)
        for name, dice in worst.items()
        if name in by_name  # a case resumed from a crashed run whose files have gone since is not drawn
    ]


def _case_overlay(case: Case, dice: float, scored: set[str], settings: Settings) -> Overlay:
    """Every scored class of a case on one slice: the image in 2D, in 3D the Z slice with most reference."""
    masks: list[tuple[str, np.ndarray, np.ndarray]] = []
    spacing = None
    for pair in case.pairs:
        if pair.pred.name in scored:
            pred, ref, spacing = load_pair(pair.pred, pair.ref, settings.spacing)
            masks += [(n, pred == v, ref == v) for n, v in pair_classes(pair, ref, settings.classes).items()]
    shape = masks[0][2].shape
    image = (
        None
        if settings.images is None
        else _case_image(case.name, settings.images, shape, "its overlay is drawn on the reference instead")
    )
    title = f"{case.name}: lowest Dice {dice:.3f}"
    if len(shape) == 3:
        z = int(np.argmax(sum(ref.sum(axis=(0, 1)) for _, _, ref in masks)))
        masks = [(name, p[..., z], r[..., z]) for name, p, r in masks]
        image = None if image is None else image[..., z]
        title += f", slice z={z}"
    return Overlay(title, masks, spacing, image)


def _case_image(
    case: str, image_files: dict[str, Path], shape: tuple[int, ...], consequence: str
) -> np.ndarray | None:
    """The case's grey image on the masks' grid; None, with a warning saying the ``consequence``, when it is
    missing or on another grid."""
    path = image_files.get(case)
    try:
        if path is None:
            raise InputError(None, "no image of this case")
        image, _ = load_image(path)
        if image.shape != shape:
            raise InputError(path, f"image shape {image.shape} differs from the masks' {shape}")
    except InputError as err:
        warnings.warn(f"{case}: {err}; {consequence}", stacklevel=2)
        return None
    return image


def _single_files(folder: Path) -> dict[str, Path]:
    """Case name → file, for the names that only one file has."""
    return {key: paths[0] for key, paths in by_name(mask_files(folder), case_name).items() if len(paths) == 1}


def _skipped_row(case: str, problem: str, structure: str | None = None, pair: Pair | None = None) -> dict:
    return {
        "case": case,
        "class": structure,
        "status": "skipped",
        "problem": problem,
        "pred_file": None if pair is None else pair.pred.name,
        "ref_file": None if pair is None else pair.ref.name,
    }


def _columns(measures: Sequence[str]) -> list[str]:
    return list(BASE_COLUMNS) + [c for m in ALL_MEASURES if m in measures for c in MEASURE_COLUMNS[m]]


def _evaluated_table(cases: list[Case], settings: Settings, out: Path, workers: int) -> pd.DataFrame:
    """Stream each case's rows to ``cases.partial.csv`` (resuming a crashed run); publish ``cases.csv``."""
    columns = _columns(settings.measures)
    partial = out / "cases.partial.csv"
    done = _resume(partial, columns)
    tasks = [(case, settings) for case in cases if case.name not in done]
    with _appender(partial, columns, fresh=not done) as append:
        for rows in tqdm(_map(evaluate_case, tasks, workers), total=len(tasks), desc="evaluate", unit="case"):
            append(rows)

    numeric = {c: float for c in columns if c == "ndim" or c not in BASE_COLUMNS}
    table = pd.read_csv(partial, keep_default_na=False, na_values=[""], dtype=numeric)
    table = table.sort_values(["case", "class"], na_position="first", kind="stable").reset_index(drop=True)
    table = table.drop(columns=[c for c in OPTIONAL_COLUMNS if c in table and table[c].isna().all()])
    atomic_write_with(out / "cases.csv", lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"))
    partial.unlink()
    return table


def _map(fn, tasks: list, workers: int) -> Iterator:
    """``map`` in order, in this process or over a pool; both yield one case's result at a time."""
    if workers <= 1 or len(tasks) <= 1:
        yield from map(fn, tasks)
        return
    with multiprocessing.get_context("spawn").Pool(min(workers, len(tasks))) as pool:
        yield from pool.imap(fn, tasks, chunksize=1)


def _resume(partial: Path, columns: list[str]) -> set[str]:
    """Cases finished by an interrupted run with the same columns (else nothing: start afresh).

    The last case in the file is dropped and redone: the crash may have cut its rows short.
    """
    if not partial.exists():
        return set()
    lines = [
        line for line in partial.read_text(encoding="utf-8").splitlines(keepends=True) if line.endswith("\n")
    ]
    if not lines or lines[0].rstrip("\n") != ",".join(columns):
        return set()
    rows = list(csv.DictReader(lines))
    if not all(_intact(row) for row in rows):
        print(
            f"{partial}: damaged (a value that is not a number); evaluating every case afresh",
            file=sys.stderr,
        )
        return set()
    keys = [row["case"] for row in rows]
    if not keys:
        return set()
    kept = [line for line, key in zip(lines[1:], keys, strict=True) if key != keys[-1]]
    partial.write_text(lines[0] + "".join(kept), encoding="utf-8")
    return set(keys) - {keys[-1]}


def _intact(row: dict) -> bool:
    """A partial row as this module writes it: numbers (or nothing) in every numeric column."""
    for column in row.keys() - set(BASE_COLUMNS) | {"ndim"}:
        value = row.get(column)
        if value in ("", None):
            continue
        try:
            float(value)
        except (TypeError, ValueError):
            return False
    return True


@contextmanager
def _appender(path: Path, columns: list[str], fresh: bool) -> Iterator[Callable[[list[dict]], None]]:
    """Append rows to the partial CSV, flushed to disk after each case."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w" if fresh else "a", newline="", encoding="utf-8", errors="backslashreplace") as file:
        writer = csv.DictWriter(file, columns, extrasaction="ignore", lineterminator="\n")
        if fresh:
            writer.writeheader()

        def append(rows: list[dict]) -> None:
            writer.writerows({k: _csv_value(v) for k, v in row.items()} for row in rows)
            file.flush()
            os.fsync(file.fileno())

        yield append


def _csv_value(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value
