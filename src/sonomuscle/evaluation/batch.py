"""Batch evaluation of a folder of predicted masks against a folder of references (``sonomuscle evaluate``).

Pairing rule: a file's case name is its name without the image extension (``.nii.gz``, ``.png``, ...) and
without one trailing ``_seg``, ``_pred``, ``_prediction``, ``_mask``, ``_label`` or ``_gt``; the rule is the
same on both sides, so ``case01_pred.nii.gz`` pairs with ``case01.nii.gz`` or ``case01_seg.nii.gz``.

Cases stream one at a time (read, compute, append a CSV row, drop), so memory stays flat however many cases
there are; ``workers > 1`` maps cases over a process pool in order, so the CSV is the same. Rows go to
``cases.partial.csv`` as they are computed (a crash loses nothing; the next run resumes from it) and the
finished table is published atomically as ``cases.csv``. A case that cannot be evaluated is recorded with
its reason and the run goes on.
"""

from __future__ import annotations

import csv
import math
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from sonomuscle.data.readers import SUPPORTED_SUFFIXES, load_image, stem_of, suffix_of
from sonomuscle.errors import InputError
from sonomuscle.io import atomic_write_json, atomic_write_with
from sonomuscle.measures.area import area, volume
from sonomuscle.measures.thickness import thickness_summary
from sonomuscle.metrics.segmentation import segmentation_metrics

ALL_MEASURES = ("dice", "hd95", "assd", "volume", "thickness")
NAME_SUFFIXES = ("_seg", "_pred", "_prediction", "_mask", "_label", "_gt")
SPACING_RTOL = 1e-3
N_OVERLAYS = 6

# columns each requested measure adds to cases.csv
MEASURE_COLUMNS = {
    "dice": ("dice", "precision", "recall"),
    "hd95": ("hd95",),
    "assd": ("assd",),
    "volume": ("volume_pred", "volume_ref"),
    "thickness": (
        "thickness_mean_pred",
        "thickness_mean_ref",
        "thickness_median_pred",
        "thickness_median_ref",
    ),
}
BASE_COLUMNS = ("case", "label", "status", "problem", "flag", "ndim", "units", "pred_file", "ref_file")


def evaluate_folder(
    pred: Path,
    ref: Path,
    out: Path,
    labels: dict[str, int] | None = None,
    measures: Sequence[str] = ALL_MEASURES,
    workers: int = 1,
) -> dict:
    """Evaluate every case; write ``cases.csv``, ``summary.json``, ``agreement.csv``, ``report.html`` to ``out``.

    ``labels`` maps names to label values; by default every non-zero value in each reference (``label_<v>``).
    Returns the summary written to ``summary.json``.
    """
    from sonomuscle.evaluation.report import summarise, write_report

    pred, ref, out = Path(pred), Path(ref), Path(out)
    for folder in (pred, ref):
        if not folder.is_dir():
            raise InputError(folder, "not a folder")
    unknown = sorted(set(measures) - set(ALL_MEASURES))
    if unknown:
        raise InputError(None, f"unknown measures {unknown}; choose from {list(ALL_MEASURES)}")
    columns = list(BASE_COLUMNS) + [c for m in ALL_MEASURES if m in measures for c in MEASURE_COLUMNS[m]]

    pairs, problems = pair_cases(pred, ref)
    if not pairs and not problems:
        raise InputError(ref, f"no image files here nor in {pred}")
    partial = out / "cases.partial.csv"
    done = _resume(partial, columns)
    tasks = [(key, p, r, labels, tuple(measures)) for key, p, r in pairs if key not in done]

    with _appender(partial, columns, fresh=not done) as append:
        for key, problem in problems:
            if key not in done:
                append([_skipped_row(key, problem)])
        for rows in tqdm(_map(evaluate_case, tasks, workers), total=len(tasks), desc="evaluate", unit="case"):
            append(rows)

    numeric = {c: float for c in columns if c == "ndim" or c not in BASE_COLUMNS}
    cases = pd.read_csv(partial, keep_default_na=False, na_values=[""], dtype=numeric)
    cases = cases.sort_values(["case", "label"], na_position="first", kind="stable").reset_index(drop=True)
    atomic_write_with(out / "cases.csv", lambda tmp: cases.to_csv(tmp, index=False))
    partial.unlink()

    summary, agreement_table = summarise(cases, measures)
    atomic_write_json(out / "summary.json", summary)
    atomic_write_with(out / "agreement.csv", lambda tmp: agreement_table.to_csv(tmp, index=False))
    write_report(out / "report.html", cases, summary, agreement_table, _worst_overlays(cases, pred, ref))
    return summary


def case_name(path: Path) -> str:
    """The pairing key of a file: its name less the image extension and one known suffix."""
    name = stem_of(path)
    for suffix in NAME_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def pair_cases(pred: Path, ref: Path) -> tuple[list[tuple[str, Path, Path]], list[tuple[str, str]]]:
    """Match files by case name; anything unmatched or ambiguous becomes a (case, problem) entry."""
    sides = {"prediction": _index(pred), "reference": _index(ref)}
    problems: list[tuple[str, str]] = []
    for side, files in sides.items():
        for key, paths in files.items():
            if len(paths) > 1:
                problems.append(
                    (key, f"several {side} files share this case name: {[p.name for p in paths]}")
                )
    preds, refs = sides["prediction"], sides["reference"]
    pairs = []
    for key in sorted(preds.keys() | refs.keys()):
        if len(preds.get(key, [])) > 1 or len(refs.get(key, [])) > 1:
            continue
        if key not in refs:
            problems.append((key, f"missing reference for prediction {preds[key][0].name}"))
        elif key not in preds:
            problems.append((key, f"missing prediction for reference {refs[key][0].name}"))
        else:
            pairs.append((key, preds[key][0], refs[key][0]))
    return pairs, sorted(problems)


def evaluate_case(task: tuple) -> list[dict]:
    """One case → one CSV row per label; bad input becomes a single ``skipped`` row with the reason."""
    key, pred_path, ref_path, labels, measures = task
    try:
        pred, ref, spacing = load_pair(pred_path, ref_path)
    except InputError as err:
        return [_skipped_row(key, str(err), pred_path, ref_path)]
    if labels is None:
        labels = {f"label_{v}": int(v) for v in np.unique(ref) if v != 0}
        if not labels:
            return [
                _skipped_row(
                    key, f"{ref_path.name}: reference is empty, no label to evaluate", pred_path, ref_path
                )
            ]

    base = {
        "case": key,
        "ndim": ref.ndim,
        "units": "px" if spacing is None else "mm",
        "pred_file": pred_path.name,
        "ref_file": ref_path.name,
    }
    wants_overlap = {"dice", "hd95", "assd"} & set(measures)
    overlap = segmentation_metrics(pred, ref, spacing, labels) if wants_overlap else {}
    rows = []
    for name, value in labels.items():
        row = dict(base, label=name, status="ok", problem=None, flag=overlap.get(name, {}).get("flag"))
        for m in ("dice", "hd95", "assd"):
            if m in measures:
                row.update({c: overlap[name][c] for c in MEASURE_COLUMNS[m]})
        if {"volume", "thickness"} & set(measures):
            row.update(_shape_measures(pred == value, ref == value, spacing, measures))
        if (ref == value).any() and not (pred == value).any():
            row.update(status="flagged", problem="empty prediction", flag="empty_pred")
        rows.append(row)
    return rows


def load_pair(pred_path: Path, ref_path: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...] | None]:
    """Read both label maps and check they describe the same grid; spacing comes from the reference."""
    ref, ref_spacing = load_image(ref_path)
    pred, pred_spacing = load_image(pred_path)
    ref, pred = _label_map(ref, ref_path), _label_map(pred, pred_path)
    if pred.shape != ref.shape:
        raise InputError(pred_path, f"shape mismatch: prediction {pred.shape}, reference {ref.shape}")
    if ref_spacing is None:
        return pred, ref, None
    # a prediction saved without spacing (e.g. PNG) takes the reference's; one that has it must agree
    if pred_spacing is not None and not np.allclose(pred_spacing, ref_spacing, rtol=SPACING_RTOL, atol=0):
        raise InputError(
            pred_path,
            f"spacing mismatch: prediction {tuple(map(float, pred_spacing))}, "
            f"reference {tuple(map(float, ref_spacing))} mm",
        )
    return pred, ref, tuple(float(s) for s in ref_spacing)


def _label_map(array: np.ndarray, path: Path) -> np.ndarray:
    """Integer class map; a 0/255 mask becomes 0/1 (CONVENTIONS: masks on disk are 0/255 or 0/1)."""
    array = np.asarray(array)
    if not np.isfinite(array).all():
        raise InputError(path, "label map contains NaN or infinite values")
    values = np.unique(array)
    if (values != np.round(values)).any() or values.min() < 0:
        raise InputError(path, f"label values must be non-negative integers, found {values[:5].tolist()}")
    array = array.astype(np.int32)
    if set(values.tolist()) == {0, 255} or values.tolist() == [255]:
        array //= 255
    return array


def _shape_measures(pred: np.ndarray, ref: np.ndarray, spacing, measures: Sequence[str]) -> dict[str, float]:
    """Volume (area in 2D) and local wall thickness of one label, prediction and reference."""
    row: dict[str, float] = {}
    if "volume" in measures:
        size = volume if ref.ndim == 3 else area
        row.update(volume_pred=float(size(pred, spacing)), volume_ref=float(size(ref, spacing)))
    if "thickness" in measures:
        for side, mask in (("pred", pred), ("ref", ref)):
            summary = thickness_summary(mask, spacing)  # NaN for an empty mask
            row[f"thickness_mean_{side}"] = float(summary["mean"])
            row[f"thickness_median_{side}"] = float(summary["median"])
    return row


def _worst_overlays(cases: pd.DataFrame, pred: Path, ref: Path) -> list[tuple]:
    """(title, pred slice, ref slice, spacing) of the lowest-Dice cases, reloaded one at a time and cut to one slice.

    The slice is the whole image in 2D and, in 3D, the Z slice with the largest reference area.
    """
    if "dice" not in cases:
        return []
    scored = cases[cases["status"] != "skipped"].dropna(subset=["dice"])
    worst = scored.groupby("case", sort=False)["dice"].min().nsmallest(N_OVERLAYS)
    files = scored.drop_duplicates("case").set_index("case")
    overlays = []
    for case, dice in worst.items():
        p, r, spacing = load_pair(pred / files.loc[case, "pred_file"], ref / files.loc[case, "ref_file"])
        if r.ndim == 3:
            z = int(np.argmax((r > 0).sum(axis=(0, 1))))
            p, r, where = p[..., z], r[..., z], f", slice z={z}"
        else:
            where = ""
        overlays.append((f"{case}: lowest Dice {dice:.3f}{where}", p, r, spacing))
    return overlays


def _skipped_row(key: str, problem: str, pred_path: Path | None = None, ref_path: Path | None = None) -> dict:
    return {
        "case": key,
        "status": "skipped",
        "problem": problem,
        "pred_file": None if pred_path is None else pred_path.name,
        "ref_file": None if ref_path is None else ref_path.name,
    }


def _index(folder: Path) -> dict[str, list[Path]]:
    files: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith(".") and suffix_of(path) in SUPPORTED_SUFFIXES:
            files.setdefault(case_name(path), []).append(path)
    return files


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
    keys = [row["case"] for row in csv.DictReader(lines)]
    if not keys:
        return set()
    kept = [line for line, key in zip(lines[1:], keys, strict=True) if key != keys[-1]]
    partial.write_text(lines[0] + "".join(kept), encoding="utf-8")
    return set(keys) - {keys[-1]}


@contextmanager
def _appender(path: Path, columns: list[str], fresh: bool) -> Iterator[Callable[[list[dict]], None]]:
    """Append rows to the partial CSV, flushed to disk after each case."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w" if fresh else "a", newline="", encoding="utf-8") as file:
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
