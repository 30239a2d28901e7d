"""The end-to-end demo (the README's first command): phantoms → training → inference → report.

Everything runs the way a user runs it: phantoms from ``sonomuscle synth``'s library function, training and
inference through ``python -m monai.bundle run`` on the real bundle configs, then a report folder that a
muscle researcher can read (overlays, measurements against the phantoms' exact truth, Bland–Altman plots,
the learning curve, a summary JSON).
"""

from __future__ import annotations

import html
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sonomuscle.data.phantoms import write_phantom_dataset
from sonomuscle.data.readers import load_image
from sonomuscle.evaluation.report import (
    Overlay,
    agreement_html,
    collected_warnings,
    embedded_picture,
    overlay_figure,
    warnings_html,
    write_page,
)
from sonomuscle.io import atomic_write_json, atomic_write_with
from sonomuscle.metrics.agreement import agreement, bland_altman_plot
from sonomuscle.metrics.segmentation import segmentation_metrics
from sonomuscle.workflows import run_bundle

BUNDLE = "muscle_architecture_2d"
CHANNELS = ("aponeurosis", "fascicle")
# measurement column in the bundle's measurements.csv → column in the phantoms' truth.csv, and units
MEASURES = {
    "thickness": ("thickness_mm", "mm"),
    "pennation_angle": ("pennation_angle_deg", "deg"),
    "fascicle_length": ("fascicle_length_mm", "mm"),
}
DEFAULT_PHANTOMS = 60
DEFAULT_EPOCHS = 40
_STEPS = 4


def run_demo(
    out: Path, n: int = DEFAULT_PHANTOMS, epochs: int = DEFAULT_EPOCHS, seed: int = 0
) -> dict[str, Any]:
    """Run the whole demo into ``out`` and return the summary that is also written to ``out/report``.

    A second run into the same ``out`` trains afresh (it does not resume the first run's checkpoints).
    """
    out = Path(out)
    start = time.perf_counter()

    _step(1, f"making {n} longitudinal phantoms in {out / 'phantoms'}")
    datalist = write_phantom_dataset(task="architecture2d", out=out / "phantoms", n=n, seed=seed)

    model = out / "model" / "model.pt"
    _step(2, f"training {BUNDLE} for {epochs} epochs through monai.bundle (model in {model})")
    run_bundle(
        BUNDLE,
        "train",
        datalist=datalist,
        output_dir=out / "model",
        model_path=model,
        max_epochs=epochs,
        val_interval=max(1, min(5, epochs // 4)),
        seed=seed,
        resume=False,
    )

    _step(3, f"segmenting and measuring the held-out phantoms into {out / 'predictions'}")
    run_bundle(
        BUNDLE,
        "inference",
        datalist=datalist,
        output_dir=out / "predictions",
        model_path=model,
    )

    _step(4, f"writing the report into {out / 'report'}")
    summary = write_report(
        phantoms=out / "phantoms",
        model_dir=out / "model",
        predictions=out / "predictions",
        report=out / "report",
    )
    summary["wall_time_s"] = round(time.perf_counter() - start, 1)
    summary.update(n_phantoms=n, epochs=epochs, seed=seed)
    atomic_write_json(out / "report" / "summary.json", summary)
    _print_summary(summary, out / "report")
    return summary


def write_report(phantoms: Path, model_dir: Path, predictions: Path, report: Path) -> dict[str, Any]:
    """Compare predictions with the phantoms' masks and exact measurements; write tables, plots, report.html."""
    report.mkdir(parents=True, exist_ok=True)
    messages: list[str] = []
    with collected_warnings(messages):
        table = comparison_table(phantoms, predictions)
        agreement_table = pd.DataFrame(
            [
                {"measure": name, "units": units}
                | agreement(table[f"{truth}_model"], table[f"{truth}_truth"])
                for name, (truth, units) in MEASURES.items()
            ]
        )
    atomic_write_with(report / "measurements.csv", lambda p: table.to_csv(p, float_format="%.6g"))
    _plot_bland_altman(table, report / "bland_altman.png")
    _plot_learning_curve(model_dir, report / "learning_curve.png")
    worst = worst_cases(table)
    for case in worst:
        _plot_overlay(phantoms, predictions, case, report / "overlays" / f"{case}.png")
    summary = {
        "n_test_cases": len(table),
        "dice": {ch: float(np.nanmean(table[f"dice_{ch}"])) for ch in CHANNELS},
        "agreement": {row["measure"]: _stats(row) for row in agreement_table.to_dict("records")},
        "units": {name: units for name, (_, units) in MEASURES.items()},
        "worst_cases": worst,
    }
    write_page(
        report / "report.html",
        "sonomuscle demo",
        _report_parts(summary, agreement_table, report, predictions, worst, messages),
    )
    return summary


def comparison_table(phantoms: Path, predictions: Path) -> pd.DataFrame:
    """One row per held-out phantom: Dice per channel, and each measure by the model, the truth and their
    difference, named ``<truth column>_model|_truth|_error`` so the unit is in every name."""
    truth = pd.read_csv(phantoms / "truth.csv").set_index("case")
    measured = pd.read_csv(predictions / "measurements.csv")
    measured.index = [Path(p).name.split(".")[0] for p in measured["image"]]
    measured = measured.loc[measured.index.isin(truth.index)]
    table = _segmentation_table(phantoms, predictions, list(measured.index))
    table.index.name = "case"
    for name, (truth_column, _) in MEASURES.items():
        table[f"{truth_column}_model"] = measured[name]
        table[f"{truth_column}_truth"] = truth.loc[measured.index, truth_column]
        table[f"{truth_column}_error"] = table[f"{truth_column}_model"] - table[f"{truth_column}_truth"]
    table["n_fascicles"] = measured["n_fascicles"]
    table["qc"] = measured["qc"].fillna("")
    return table


def worst_cases(table: pd.DataFrame) -> dict[str, str]:
    """The case with the lowest aponeurosis Dice and, per measure, the largest error: always in the report."""
    picks = {"lowest aponeurosis Dice": table["dice_aponeurosis"].idxmin()}
    for name, (truth_column, units) in MEASURES.items():
        errors = table[f"{truth_column}_error"].abs()
        if errors.notna().any():
            picks[f"largest {name.replace('_', ' ')} error ({units})"] = errors.idxmax()
    worst: dict[str, str] = {}
    for reason, case in picks.items():
        worst[case] = f"{worst[case]}; {reason}" if case in worst else reason
    return worst


def _report_parts(
    summary: dict, agreement_table: pd.DataFrame, report: Path, predictions: Path, worst: dict, messages: list
) -> list[str]:
    dice = ", ".join(f"{ch} {value:.3f}" for ch, value in summary["dice"].items())
    parts = [
        "<h1>sonomuscle demo</h1>",
        f"<p>{summary['n_test_cases']} held-out phantoms, measured against their exact truth. "
        f"Mean Dice: {html.escape(dice)}.</p>",
        "<h2>Training</h2>",
        embedded_picture(report / "learning_curve.png", "learning curve"),
        agreement_html(agreement_table, title="Measurements against the exact truth"),
        embedded_picture(report / "bland_altman.png", "Bland–Altman plots"),
        "<h2>Worst cases</h2><p>The bundle's overlay (masks, the fitted aponeurosis edges and the measured "
        "fascicles, with the values) beside the model's outlines (red) over the truth's (green).</p>",
    ]
    for case, reason in worst.items():
        parts += [
            f"<h3>{html.escape(case)}: {html.escape(reason)}</h3>",
            embedded_picture(predictions / f"{case}_overlay.jpg", f"{case} overlay"),
            embedded_picture(report / "overlays" / f"{case}.png", f"{case} outlines"),
        ]
    parts.append(warnings_html(messages))
    return parts


def _stats(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("measure", "units")}


def _segmentation_table(phantoms: Path, predictions: Path, cases: list[str]) -> pd.DataFrame:
    rows = {}
    for case in cases:
        row = {}
        for channel in CHANNELS:
            ref, spacing = load_image(phantoms / channel / f"{case}.png", mask=True)
            pred, _ = load_image(predictions / f"{case}_{channel}.png", mask=True)
            row[f"dice_{channel}"] = segmentation_metrics(pred, ref, spacing, {channel: 1})[channel]["dice"]
        rows[case] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def _plot_bland_altman(table: pd.DataFrame, target: Path) -> None:
    fig = Figure(figsize=(5 * len(MEASURES), 4), layout="constrained")
    axes = fig.subplots(1, len(MEASURES))
    for ax, (name, (truth_col, units)) in zip(axes, MEASURES.items(), strict=True):
        model, truth = table[f"{truth_col}_model"], table[f"{truth_col}_truth"]
        bland_altman_plot(model, truth, ax, units=units, title=name.replace("_", " "))
    _save(fig, target)


def _plot_learning_curve(model_dir: Path, target: Path) -> None:
    """Training loss and validation Dice per epoch, from the run's ``learning_curve.csv``."""
    curve = pd.read_csv(model_dir / "learning_curve.csv")
    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, dice_ax = fig.subplots(1, 2)
    loss_ax.plot(curve["epoch"], curve["train_loss"], marker=".")
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="training loss")
    for column in [c for c in curve if c.startswith("val_dice")]:
        scored = curve[["epoch", column]].dropna()
        dice_ax.plot(scored["epoch"], scored[column], marker="o", label=column.removeprefix("val_dice_"))
    dice_ax.set(xlabel="epoch", ylabel="Dice", ylim=(0, 1), title="held-out validation Dice")
    dice_ax.legend(fontsize="small")
    _save(fig, target)


def _plot_overlay(phantoms: Path, predictions: Path, case: str, target: Path) -> None:
    """The B-mode image with each channel's reference and predicted outlines, drawn as the evaluation
    report draws them."""
    image, _ = load_image(phantoms / "images" / f"{case}.png")
    masks = [
        (
            channel,
            load_image(predictions / f"{case}_{channel}.png", mask=True)[0].astype(bool),
            load_image(phantoms / channel / f"{case}.png", mask=True)[0].astype(bool),
        )
        for channel in CHANNELS
    ]
    _save(overlay_figure(Overlay(case, masks, None, image)), target)


def _save(fig: Figure, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_with(target, lambda p: fig.savefig(p, dpi=100, format="png"))


def _step(i: int, text: str) -> None:
    print(f"[demo {i}/{_STEPS}] {text}", flush=True)


def _print_summary(summary: dict[str, Any], report: Path) -> None:
    print(f"[demo] done in {summary['wall_time_s']:.0f} s; report: {report / 'report.html'}")
    for channel, value in summary["dice"].items():
        print(f"[demo]   held-out Dice {channel}: {value:.3f}")
    for name, stats in summary["agreement"].items():
        units = summary["units"][name]
        mae = stats["mae"]
        print(
            f"[demo]   {name}: MAE {mae:.2f} {units}, bias {stats['bias']:.2f} {units}, ICC {stats['icc']:.3f}"
            if math.isfinite(mae)
            else f"[demo]   {name}: not measurable ({stats['reason']})"
        )
