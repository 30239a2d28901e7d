"""Evaluation of image-level predictions (a class, or a few numbers, per image) against a datalist's truth.

The classification and state-regression bundles answer once per image instead of drawing a mask, so
``sonomuscle evaluate``'s pairing of mask files does not apply: their inference writes ``predictions.csv``
and their evaluate config compares it here with the truth the datalist holds. What is computed is what a
reader of such a study asks for. Classes: accuracy, balanced accuracy (a rare class weighs as much as a
common one, which plain accuracy hides), per-class recall and precision, macro one-vs-rest AUC and the
confusion matrix. Numbers (a joint angle, an activation level): RMSE beside the spread (SD) of the truth,
since an RMSE means little without it, bias, Pearson r, the agreement statistics of
:func:`~sonomuscle.metrics.agreement.agreement`, and RMSE per subject for leave-one-subject-out reading.

A prediction row pairs with the datalist entry of the same absolute image path (a relative path is taken
against the datalist's folder), else with the entry of the same file name when only one row and one entry
have that name. What did not pair is listed by name in ``summary.json`` and on stderr; only nothing paired
at all is an error. A row with a non-empty ``error`` column (or no usable prediction) is a failed image:
counted and listed, left out of the metrics.

Written to ``out``, each atomically: ``cases.csv`` (one row per paired image), ``summary.json`` (``null``
where a statistic is undefined), ``confusion_matrix.png`` or ``predicted_vs_true.png``, and ``report.html``.
"""

from __future__ import annotations

import html
import json
import math
import os
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from monai.metrics import compute_confusion_matrix_metric, compute_roc_auc, get_confusion_matrix

from sonomuscle.bundle import load_datalist
from sonomuscle.data.table import CLASS_NAMES_KEY, TARGETS_KEY
from sonomuscle.errors import InputError
from sonomuscle.evaluation.pairing import counted
from sonomuscle.evaluation.report import (
    agreement_html,
    collected_warnings,
    embedded_picture,
    format_fraction,
    format_quantity,
    nan_to_null,
    warnings_html,
    write_page,
)
from sonomuscle.handlers.predictions import PROBABILITY_PREFIX
from sonomuscle.io import atomic_write_json, atomic_write_rows, atomic_write_with
from sonomuscle.metrics.agreement import STAT_KEYS, agreement

CLASSIFICATION, REGRESSION = "classification", "regression"
ERROR_COLUMN = "error"
FIGURES = {CLASSIFICATION: "confusion_matrix.png", REGRESSION: "predicted_vs_true.png"}
SHOWN_NAMES = 10  # names printed on stderr per list; summary.json has them all
MAX_LEGEND_SUBJECTS = 20  # more subjects than this: colours repeat and no legend is drawn
AGREEMENT_KEYS = ("n", *STAT_KEYS, "reason")  # the columns of report.agreement_html's table


@dataclass
class Paired:
    """Datalist entries with their prediction row, and the names of what did not pair."""

    pairs: list[tuple[dict, dict]]  # (datalist entry, predictions.csv row), in datalist order
    without_prediction: list[str]  # datalist images, relative to the datalist's folder where under it
    without_case: list[str]  # predictions.csv ``image`` values


@dataclass
class Scored:
    """One task's outcome: ``cases.csv`` rows, its part of ``summary.json``, its figure."""

    cases: list[dict]
    failed: list[dict]  # {"image", "error"} of each paired image without a usable prediction
    results: dict
    figure: Figure


def evaluate_predictions(
    predictions: str | os.PathLike, datalist: str | os.PathLike, split: str, out: str | os.PathLike
) -> dict:
    """Compare ``predictions.csv`` with the ``split`` entries of ``datalist``; write ``cases.csv``,
    ``summary.json``, the task's figure and ``report.html`` to ``out``; return the summary.

    The datalist's ``class_names`` make it a classification, its ``targets`` a regression.
    """
    predictions, datalist, out = Path(predictions), Path(datalist), Path(out)
    meta, entries = read_datalist(datalist, split)
    task = datalist_task(meta, datalist)
    rows = read_predictions(predictions, _required_columns(task, meta))
    paired = pair_predictions(rows, entries, datalist, predictions)
    if not paired.pairs:
        raise InputError(predictions, f"no row names an image of the {split!r} list of {datalist}")
    _say_unpaired(paired, predictions, split)
    messages: list[str] = []
    with collected_warnings(messages):
        scored = (_classify if task == CLASSIFICATION else _regress)(paired, meta, datalist, predictions)
    summary = nan_to_null(
        {
            "task": task,
            "split": split,
            "predictions": str(predictions),
            "datalist": str(datalist),
            "n_cases": len(entries),
            "n_predictions": len(rows),
            "n_images": len(paired.pairs) - len(scored.failed),
            "n_failed": len(scored.failed),
            "failed": scored.failed,
            "without_prediction": paired.without_prediction,
            "without_case": paired.without_case,
        }
        | scored.results
        | {"warnings": list(dict.fromkeys(messages))}
    )
    figure = out / FIGURES[task]
    atomic_write_rows(out / "cases.csv", scored.cases)
    atomic_write_with(figure, lambda tmp: scored.figure.savefig(tmp, format="png", dpi=100))
    atomic_write_json(out / "summary.json", summary)
    _write_report(out / "report.html", summary, figure)
    return summary


def image_level_outcome(summary: dict, out: str | os.PathLike) -> str:
    """The one line a run prints: images evaluated (and left out), the headline metrics, the report."""
    return f"{_headline(summary)}; report: {Path(out) / 'report.html'}"


def _headline(summary: dict) -> str:
    """``test: 40 images (2 failed), accuracy 0.925, ...``: what was evaluated and how well."""
    left_out = [
        text
        for n, text in (
            (summary["n_failed"], f"{summary['n_failed']} failed"),
            (
                len(summary["without_prediction"]),
                f"{len(summary['without_prediction'])} without a prediction",
            ),
            (
                len(summary["without_case"]),
                counted(len(summary["without_case"]), "prediction") + f" of no {summary['split']} image",
            ),
        )
        if n
    ]
    head = f"{summary['split']}: {counted(summary['n_images'], 'image')}"
    if left_out:
        head += f" ({', '.join(left_out)})"
    if summary["task"] == CLASSIFICATION:
        metrics = (
            f"accuracy {format_fraction(summary['accuracy'])}, balanced accuracy "
            f"{format_fraction(summary['balanced_accuracy'])}, macro AUC {format_fraction(summary['macro_auc'])}"
        )
    else:
        metrics = ", ".join(
            f"{target} RMSE {format_quantity(stats['rmse'])} (SD {format_quantity(stats['sd_truth'])})"
            for target, stats in summary["targets"].items()
        )
    return f"{head}, {metrics}"


# ---- reading and pairing ------------------------------------------------------------------------------


def read_datalist(path: Path, split: str) -> tuple[dict, list[dict]]:
    """The datalist's top-level content and its ``split`` entries, image paths absolute.

    MONAI makes any field that names an existing file absolute (a ``subject`` "s01" beside a folder
    ``s01/``), so every field but ``image`` keeps the value written in the file.
    """
    entries = load_datalist(path, split)
    meta = json.loads(path.read_text(encoding="utf-8"))
    for i, (entry, written) in enumerate(zip(entries, meta[split], strict=True)):
        if isinstance(written, dict):
            entry.update({k: v for k, v in written.items() if k != "image"})
        if not entry.get("image"):
            raise InputError(path, f"entry {i} of the {split!r} list has no image")
    return meta, entries


def datalist_task(meta: dict, path: Path) -> str:
    """``classification`` (``class_names`` at the top) or ``regression`` (``targets``); the names checked."""
    keys = [key for key in (CLASS_NAMES_KEY, TARGETS_KEY) if key in meta]
    if len(keys) != 1:
        raise InputError(
            path,
            f"needs {CLASS_NAMES_KEY!r} (classification) or {TARGETS_KEY!r} (regression) at its top level",
        )
    names = meta[keys[0]]
    if not (
        isinstance(names, list)
        and names
        and all(isinstance(n, str) and n for n in names)
        and len(set(names)) == len(names)
    ):
        raise InputError(path, f"{keys[0]!r} must be a list of distinct names, got {names!r}")
    return CLASSIFICATION if keys[0] == CLASS_NAMES_KEY else REGRESSION


def read_predictions(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """The rows of ``predictions.csv`` as text (nothing turned into NaN), checked to have ``required``."""
    if not path.is_file():
        raise InputError(path, "predictions not found; run the bundle's inference first")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as err:  # pandas' parser errors and undecodable text are ValueErrors
        raise InputError(path, f"cannot be read as CSV ({str(err).splitlines()[0]})") from None
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise InputError(
            path, f"no column {', '.join(missing)} (it has {', '.join(map(str, table.columns))})"
        )
    return table.to_dict(orient="records")


def pair_predictions(rows: list[dict], entries: list[dict], datalist: Path, predictions: Path) -> Paired:
    """Rows with entries: on the absolute image path, else on a file name only one of each has."""
    base = datalist.parent.resolve()
    entry_keys = _unrepeated([_absolute(entry["image"], base) for entry in entries], datalist)
    row_keys = _unrepeated([_absolute(row["image"], base) for row in rows], predictions)
    index = {key: i for i, key in enumerate(entry_keys)}
    matched = {index[key]: j for j, key in enumerate(row_keys) if key in index}
    lonely_entries = _single_names([i for i in range(len(entries)) if i not in matched], entry_keys)
    lonely_rows = _single_names([j for j in range(len(rows)) if j not in matched.values()], row_keys)
    matched |= {i: lonely_rows[name] for name, i in lonely_entries.items() if name in lonely_rows}
    paired_rows = set(matched.values())
    return Paired(
        pairs=[(entries[i], rows[matched[i]]) for i in sorted(matched)],
        without_prediction=[_shown(entry_keys[i], base) for i in range(len(entries)) if i not in matched],
        without_case=[rows[j]["image"] for j in range(len(rows)) if j not in paired_rows],
    )


def _required_columns(task: str, meta: dict) -> list[str]:
    if task == CLASSIFICATION:
        return ["image", "class", *(PROBABILITY_PREFIX + name for name in meta[CLASS_NAMES_KEY])]
    return ["image", *meta[TARGETS_KEY]]


def _absolute(image: str, base: Path) -> Path:
    return (base / image).resolve()  # an absolute ``image`` replaces ``base``


def _unrepeated(keys: list[Path], source: Path) -> list[Path]:
    repeated = sorted(str(key) for key, n in Counter(keys).items() if n > 1)
    if repeated:
        raise InputError(
            source, f"lists {counted(len(repeated), 'image')} more than once: {_listed(repeated)}"
        )
    return keys


def _single_names(indices: list[int], keys: list[Path]) -> dict[str, int]:
    """File name → index, for the names only one of ``indices`` has."""
    names = Counter(keys[i].name for i in indices)
    return {keys[i].name: i for i in indices if names[keys[i].name] == 1}


def _shown(path: Path, base: Path) -> str:
    """A datalist image as a reader finds it: relative to the datalist's folder when under it."""
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:SHOWN_NAMES])
    return shown if len(names) <= SHOWN_NAMES else f"{shown} … ({len(names) - SHOWN_NAMES} more)"


def _say_unpaired(paired: Paired, predictions: Path, split: str) -> None:
    """What did not pair, on stderr (summary.json lists every name)."""
    missing, extra = paired.without_prediction, paired.without_case
    if missing:
        print(
            f"{predictions}: {counted(len(missing), f'{split} image')} without a prediction: {_listed(missing)}",
            file=sys.stderr,
        )
    if extra:
        print(
            f"{predictions}: {counted(len(extra), 'row')} for no {split} image: {_listed(extra)}",
            file=sys.stderr,
        )


def _case(entry: dict, base: Path) -> dict[str, str]:
    """The first columns of a ``cases.csv`` row: the image as the reader finds it, its subject."""
    return {"image": _shown(_absolute(entry["image"], base), base), "subject": str(entry.get("subject", ""))}


def _failure(row: dict) -> str:
    return str(row.get(ERROR_COLUMN) or "").strip()


def _number(text: str) -> float:
    """A CSV cell as a float; NaN when it is empty or not a number."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


# ---- classification -----------------------------------------------------------------------------------


def classification_metrics(
    true: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray, names: Sequence[str]
) -> dict:
    """Accuracy, balanced accuracy, macro AUC, per-class recall and precision, confusion matrix.

    ``true`` and ``predicted`` are class indices (N,), ``probabilities`` (N, C). Balanced accuracy and AUC
    use the classes present in ``true``; AUC (one-vs-rest, MONAI) is NaN with fewer than 2 of them.
    """
    n_classes = len(names)
    matrix = np.bincount(true * n_classes + predicted, minlength=n_classes**2).reshape(n_classes, n_classes)
    one_hot = torch.nn.functional.one_hot
    counts = get_confusion_matrix(
        one_hot(torch.as_tensor(predicted), n_classes), one_hot(torch.as_tensor(true), n_classes)
    ).sum(dim=0)
    recall = compute_confusion_matrix_metric("sensitivity", counts).tolist()
    precision = compute_confusion_matrix_metric("precision", counts).tolist()
    present = np.flatnonzero(matrix.sum(axis=1))
    return {
        "accuracy": float(np.mean(true == predicted)),
        "balanced_accuracy": float(np.mean([recall[c] for c in present])),
        "macro_auc": _macro_auc(probabilities, true, present, n_classes),
        "classes": {
            name: {
                "n_true": int(matrix[c].sum()),
                "n_predicted": int(matrix[:, c].sum()),
                "recall": recall[c],
                "precision": precision[c],
            }
            for c, name in enumerate(names)
        },
        "confusion_matrix": matrix.tolist(),
    }


def _macro_auc(probabilities: np.ndarray, true: np.ndarray, present: np.ndarray, n_classes: int) -> float:
    if len(present) < 2:
        return math.nan
    truth = torch.nn.functional.one_hot(torch.as_tensor(true), n_classes)[:, present]
    scores = torch.as_tensor(probabilities[:, present], dtype=torch.float64)
    return float(compute_roc_auc(scores, truth, average="macro"))


def _classify(paired: Paired, meta: dict, datalist: Path, predictions: Path) -> Scored:
    names = meta[CLASS_NAMES_KEY]
    base = datalist.parent.resolve()
    cases, failed, evaluated = [], [], []
    for entry, row in paired.pairs:
        case = _case(entry, base)
        image = case["image"]
        true = _true_class(entry, names, datalist, image)
        probabilities = [_number(row[PROBABILITY_PREFIX + name]) for name in names]
        case["true"] = names[true]
        error = _failure(row) or _unusable_class(row, probabilities, names, predictions)
        if error:
            cases.append(case | {ERROR_COLUMN: error})
            failed.append({"image": image, "error": error})
            continue
        predicted = names.index(row["class"])
        cases.append(
            case
            | {"predicted": row["class"], "correct": predicted == true}
            | {PROBABILITY_PREFIX + n: p for n, p in zip(names, probabilities, strict=True)}
        )
        evaluated.append((true, predicted, probabilities))
    _require_some(evaluated, predictions)
    true, predicted, probabilities = (np.array(column) for column in zip(*evaluated, strict=True))
    results = {"class_names": names} | classification_metrics(true, predicted, probabilities, names)
    return Scored(cases, failed, results, confusion_figure(np.array(results["confusion_matrix"]), names))


def _true_class(entry: dict, names: Sequence[str], datalist: Path, image: str) -> int:
    label = entry.get("label")
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(names):
        raise InputError(datalist, f"{image}: label {label!r} is not a class index 0–{len(names) - 1}")
    return label


def _unusable_class(row: dict, probabilities: list[float], names: Sequence[str], predictions: Path) -> str:
    """Why a row without an error still gives no prediction ("" when it does); a class the datalist does
    not know means the two files do not belong together."""
    if not row["class"]:
        return "no predicted class"
    if row["class"] not in names:
        raise InputError(
            predictions, f"{row['image']}: class {row['class']!r} is not among the datalist's {list(names)}"
        )
    bad = [PROBABILITY_PREFIX + n for n, p in zip(names, probabilities, strict=True) if not math.isfinite(p)]
    return f"{', '.join(bad)} not a number" if bad else ""


def confusion_figure(matrix: np.ndarray, names: Sequence[str]) -> Figure:
    """Counts (rows: true class, columns: predicted) written in their cells, class names on both axes."""
    side = max(4.0, 0.7 * len(names) + 2.5)
    fig = Figure(figsize=(side, side), layout="constrained")
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(int(matrix.max()), 1))
    ticks = range(len(names))
    ax.set_xticks(ticks, names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(ticks, names)
    for (i, j), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        ax.text(j, i, str(count), ha="center", va="center", color=colour, fontsize="medium")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Confusion matrix (image counts)")
    return fig


# ---- regression ---------------------------------------------------------------------------------------


def regression_metrics(
    true: np.ndarray, predicted: np.ndarray, subjects: Sequence[str], targets: Sequence[str]
) -> dict:
    """Per target (columns of the (N, T) arrays): the agreement statistics (RMSE, MAE, bias, r and its p,
    ...), the SD of the truth and RMSE/SD; per subject: its images and RMSE of each target."""
    per_target = {}
    for j, target in enumerate(targets):
        stats = agreement(predicted[:, j], true[:, j])
        sd = float(np.std(true[:, j], ddof=1)) if len(true) > 1 else math.nan
        ratio = stats["rmse"] / sd if sd > 0 else math.nan
        per_target[target] = stats | {"sd_truth": sd, "rmse_sd_ratio": ratio}
    subjects = np.asarray(subjects, dtype=str)
    per_subject = {
        subject: _subject_rmse(predicted[subjects == subject], true[subjects == subject], targets)
        for subject in sorted(set(subjects) - {""})
    }
    return {"targets": per_target, "per_subject": per_subject}


def _subject_rmse(predicted: np.ndarray, true: np.ndarray, targets: Sequence[str]) -> dict:
    """One subject's images and RMSE of each target (defined from one image, unlike the agreement)."""
    rmse = np.sqrt(np.mean((predicted - true) ** 2, axis=0)).tolist()
    return {"n": len(true), "rmse": dict(zip(targets, rmse, strict=True))}


def _regress(paired: Paired, meta: dict, datalist: Path, predictions: Path) -> Scored:
    targets = meta[TARGETS_KEY]
    base = datalist.parent.resolve()
    cases, failed, evaluated = [], [], []
    for entry, row in paired.pairs:
        case = _case(entry, base)
        image = case["image"]
        true = _true_values(entry, targets, datalist, image)
        values = [_number(row[target]) for target in targets]
        error = _failure(row) or ", ".join(
            f"{t} not a number" for t, v in zip(targets, values, strict=True) if math.isnan(v)
        )
        if error:
            cases.append(
                case | {f"{t}_true": v for t, v in zip(targets, true, strict=True)} | {ERROR_COLUMN: error}
            )
            failed.append({"image": image, "error": error})
            continue
        for target, t, p in zip(targets, true, values, strict=True):
            case |= {f"{target}_true": t, f"{target}_predicted": p, f"{target}_difference": p - t}
        cases.append(case)
        evaluated.append((true, values, case["subject"]))
    _require_some(evaluated, predictions)
    true, predicted = (np.array(column, dtype=float) for column in list(zip(*evaluated, strict=True))[:2])
    subjects = [subject for _, _, subject in evaluated]
    results = regression_metrics(true, predicted, subjects, targets)
    for target, stats in results["targets"].items():
        if stats["reason"]:  # why its statistics are undefined (too few images, constant values)
            warnings.warn(f"{target}: {stats['reason']}", stacklevel=1)
    figure = predicted_vs_true_figure(true, predicted, subjects, targets, results["targets"])
    return Scored(cases, failed, results, figure)


def _true_values(entry: dict, targets: Sequence[str], datalist: Path, image: str) -> list[float]:
    label = entry.get("label")
    values = [label] if len(targets) == 1 and not isinstance(label, list) else label
    if not (
        isinstance(values, list)
        and len(values) == len(targets)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    ):
        raise InputError(datalist, f"{image}: label {label!r} is not {len(targets)} numbers {list(targets)}")
    return [float(v) for v in values]


def _require_some(evaluated: list, predictions: Path) -> None:
    if not evaluated:
        raise InputError(predictions, "every paired image failed (see its error column): nothing to evaluate")


def predicted_vs_true_figure(
    true: np.ndarray, predicted: np.ndarray, subjects: Sequence[str], targets: Sequence[str], stats: dict
) -> Figure:
    """One panel per target: predicted against true, identity line, points coloured by subject."""
    groups = sorted(set(subjects))
    legend = 1 < len(groups) <= MAX_LEGEND_SUBJECTS
    fig = Figure(figsize=(4.5 * len(targets) + (1.5 if legend else 0), 4.5), layout="constrained")
    axes = fig.subplots(1, len(targets), squeeze=False)[0]
    palette = colormaps["tab10" if len(groups) <= 10 else "tab20"]
    where = np.asarray(subjects, dtype=str)
    for j, (ax, target) in enumerate(zip(axes, targets, strict=True)):
        for k, subject in enumerate(groups):
            chosen = where == subject
            colour = palette(k % palette.N)
            label = subject or "no subject"
            ax.scatter(true[chosen, j], predicted[chosen, j], s=16, alpha=0.8, color=colour, label=label)
        both = np.concatenate([true[:, j], predicted[:, j]])
        ax.plot(
            [both.min(), both.max()], [both.min(), both.max()], color="grey", linewidth=1, label="identity"
        )
        ax.set_xlabel(f"true {target}")
        ax.set_ylabel(f"predicted {target}")
        ax.set_title(
            f"{target}: RMSE {format_quantity(stats[target]['rmse'])}, r {format_fraction(stats[target]['r'])}",
            fontsize="medium",
        )
    if legend:
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", title="subject")
    return fig


# ---- report -------------------------------------------------------------------------------------------


def _write_report(path: Path, summary: dict, figure: Path) -> Path:
    task = summary["task"]
    parts = [
        f"<h1>Image {task} evaluation</h1><p>{html.escape(_headline(summary))}.</p>"
        f"<p>Truth: the {html.escape(summary['split'])} list of {html.escape(summary['datalist'])} "
        f"({summary['n_cases']} images); predictions: {html.escape(summary['predictions'])} "
        f"({summary['n_predictions']} rows).</p>",
        *(_classification_html if task == CLASSIFICATION else _regression_html)(summary),
        embedded_picture(figure, figure.stem.replace("_", " ")),
        *_problems_html(summary),
        warnings_html(summary["warnings"]),
    ]
    return write_page(path, f"sonomuscle {task} evaluation", parts)


def _classification_html(summary: dict) -> list[str]:
    headline = pd.DataFrame(
        [{k: format_fraction(summary[k]) for k in ("accuracy", "balanced_accuracy", "macro_auc")}]
    ).rename(columns=lambda c: c.replace("_", " ").replace("auc", "AUC"))
    per_class = pd.DataFrame(
        [
            {
                "class": name,
                "true images": stats["n_true"],
                "predicted images": stats["n_predicted"],
                "recall": format_fraction(stats["recall"]),
                "precision": format_fraction(stats["precision"]),
            }
            for name, stats in summary["classes"].items()
        ]
    )
    return [
        "<h2>Scores</h2><p>Balanced accuracy is the mean recall of the classes present in the truth; "
        "macro AUC the mean one-vs-rest ROC AUC over those classes.</p>",
        headline.to_html(index=False),
        "<h2>Per class</h2>",
        per_class.to_html(index=False),
        "<h2>Confusion matrix</h2><p>Rows: true class; columns: predicted class.</p>",
    ]


def _regression_html(summary: dict) -> list[str]:
    targets = summary["targets"]
    spread = pd.DataFrame(
        [
            {
                "target": target,
                "n": stats["n"],
                "RMSE": format_quantity(stats["rmse"]),
                "SD of truth": format_quantity(stats["sd_truth"]),
                "RMSE / SD": format_quantity(stats["rmse_sd_ratio"]),
                "r": format_fraction(stats["r"]),
                "p of r": format_quantity(stats["r_p"]),
            }
            for target, stats in targets.items()
        ]
    )
    agreement_table = pd.DataFrame(
        [{"target": t, "units": ""} | {k: stats[k] for k in AGREEMENT_KEYS} for t, stats in targets.items()]
    )
    parts = [
        "<h2>Error against the spread of the truth</h2><p>An RMSE/SD near 1 means the model does no "
        "better than predicting the mean.</p>",
        spread.to_html(index=False),
        agreement_html(agreement_table, "Agreement of prediction with truth"),
    ]
    if summary["per_subject"]:
        by_subject = pd.DataFrame(
            [
                {"subject": subject, "images": s["n"]}
                | {f"{t} RMSE": format_quantity(v) for t, v in s["rmse"].items()}
                for subject, s in summary["per_subject"].items()
            ]
        )
        parts += ["<h2>Per subject</h2>", by_subject.to_html(index=False)]
    return [*parts, "<h2>Predicted against true</h2>"]


def _problems_html(summary: dict) -> list[str]:
    rows = (
        [{"image": f["image"], "problem": f"failed: {f['error']}"} for f in summary["failed"]]
        + [{"image": name, "problem": "no prediction"} for name in summary["without_prediction"]]
        + [
            {"image": name, "problem": f"prediction of no {summary['split']} image"}
            for name in summary["without_case"]
        ]
    )
    table = pd.DataFrame(rows).to_html(index=False) if rows else "<p>None: every image was evaluated.</p>"
    return [f"<h2>Problems ({len(rows)})</h2>", table]
