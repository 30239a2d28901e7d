"""Small helpers bundle configs call: datalists with clear errors, inference cases from a folder, handlers per rank.

A bundle run should fail on a missing datalist with one line that says what to do, an inference run
over a user's folder should take every image and video in it, and a
``torchrun`` training should write each file once and never leave a rank waiting in a collective.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch.distributed as dist
from monai.data import load_decathlon_datalist
from monai.handlers import (
    CheckpointLoader,
    ClassificationSaver,
    DecollateBatch,
    EarlyStopHandler,
    IgniteMetricHandler,
    LrScheduleHandler,
    MeanDice,
    MetricsSaver,
    ParamSchedulerHandler,
    PostProcessing,
    SmartCacheHandler,
    ValidationHandler,
    from_engine,
)

from sonomuscle.data.stream import input_files
from sonomuscle.errors import InputError, positive_mm
from sonomuscle.handlers.results import ResultsHandler
from sonomuscle.handlers.skipped import SkippedInputs
from sonomuscle.io import atomic_write_json


def load_datalist(
    datalist: str | os.PathLike, split: str, base_dir: str | os.PathLike | None = None
) -> list[dict]:
    """The ``split`` entries of an MSD-style datalist, paths made absolute against ``base_dir``."""
    path = Path(datalist)
    if not path.is_file():
        raise InputError(
            path,
            "datalist not found; make one with `sonomuscle datalist` or `sonomuscle synth --task architecture2d`",
        )
    try:
        entries = load_decathlon_datalist(path, True, split, base_dir or path.parent)
    except (ValueError, KeyError) as err:
        raise InputError(path, f"no usable {split!r} list ({str(err).splitlines()[0]})") from None
    if not entries:
        raise InputError(
            path, f"its {split!r} list is empty (`sonomuscle datalist` fractions decide the splits)"
        )
    return entries


def fold_entries(
    datalist: str | os.PathLike,
    split: str,
    fold: int | None = None,
    base_dir: str | os.PathLike | None = None,
    crop: Sequence[int] | None = None,
) -> list[dict]:
    """:func:`load_datalist`, or with ``fold=k`` cross-validation: ``validation`` is the training and
    validation entries of fold ``k`` and ``training`` the others (``sonomuscle datalist --folds K`` or
    ``--leave-one-subject-out`` writes the folds); ``crop`` boxes every entry without a region of its own.
    """
    if fold is None or split not in ("training", "validation"):
        entries = load_datalist(datalist, split, base_dir)
    else:
        pool, folds = fold_pool(datalist, base_dir)
        if fold not in folds:
            raise InputError(datalist, f"has no fold {fold} (folds: {folds})")
        entries = [e for e in pool if (e["fold"] == fold) == (split == "validation")]
    return with_region(entries, crop)


def fold_pool(
    datalist: str | os.PathLike, base_dir: str | os.PathLike | None = None, fewest: int = 1
) -> tuple[list[dict], list[int]]:
    """The training and validation entries that cross-validation deals into folds, and the folds; one line
    when there are fewer than ``fewest`` folds."""
    pool = [e for s in ("training", "validation") for e in entries_or_empty(datalist, s, base_dir)]
    folds = sorted({e["fold"] for e in pool if "fold" in e})
    if len(folds) < fewest:
        raise InputError(
            datalist, "has no folds: make it with `sonomuscle datalist --folds K` or --leave-one-subject-out"
        )
    return pool, folds


def entries_or_empty(
    datalist: str | os.PathLike, split: str, base_dir: str | os.PathLike | None = None
) -> list[dict]:
    """:func:`load_datalist`, or ``[]`` where the datalist has no such split (or an empty one)."""
    try:
        return load_datalist(datalist, split, base_dir)
    except InputError:
        return []


def with_region(cases: list[dict], crop: Sequence[int] | None) -> list[dict]:
    """``cases`` with the box ``crop`` [x, y, width, height] where a case names no region (box or ROI)."""
    if crop is None:
        return cases
    return [case if {"crop", "roi"} & case.keys() else {**case, "crop": list(crop)} for case in cases]


def inference_cases(
    datalist: str | os.PathLike | None,
    split: str,
    input_dir: str | os.PathLike | None = None,
    spacing: Sequence[float] | None = None,
    depth: float | None = None,
    crop: Sequence[int] | None = None,
) -> list[dict]:
    """``{"image": path}`` cases from ``input_dir`` (every image, volume, cine loop or video in it) or a
    datalist split (with its ``spacing`` or ``depth`` calibration and ``crop`` box; labels dropped:
    inference needs only images). Files are not read here: :class:`~sonomuscle.data.stream.InferenceStream` reads each once and
    skips the unreadable ones with a warning.

    ``spacing`` (mm per pixel along each axis) or ``depth`` (mm over the picture's rows) calibrate the cases
    that do not say their own: new images get millimetres as the training datalist's did. ``crop`` boxes
    the cases that name no region of interest of their own.
    """
    calibration = calibration_entry(spacing, depth)
    if input_dir:
        folder = Path(input_dir)
        if not folder.is_dir():
            raise InputError(folder, "input folder not found")
        cases = [{"image": str(f)} for f in input_files(folder)]
    else:
        cases = [
            {k: v for k, v in entry.items() if k in ("image", "spacing", "depth", "crop", "roi")}
            for entry in load_datalist(datalist, split)
        ]
    if not cases:
        raise InputError(input_dir or datalist, "no images to run on")
    if calibration:
        cases = [case if {"spacing", "depth"} & case.keys() else {**case, **calibration} for case in cases]
    return with_region(cases, crop)


def check_settings(
    spatial_size: Sequence[int],
    strides: Sequence[int | Sequence[int]],
    spatial_dims: int,
    max_epochs: int | None = None,
    val_interval: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
) -> None:
    """Refuse, naming the option, settings a run would die on deep inside (or silently misuse)."""
    for name, value in (
        ("max_epochs", max_epochs),
        ("val_interval", val_interval),
        ("batch_size", batch_size),
    ):
        if value is not None and not (isinstance(value, int) and value >= 1):
            raise InputError(f"--{name}", f"must be a whole number ≥ 1, got {value!r}")
    if learning_rate is not None and not (
        isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate > 0
    ):
        raise InputError("--learning_rate", f"must be a positive number, got {learning_rate!r}")
    size = list(spatial_size) if isinstance(spatial_size, (list, tuple)) else [spatial_size]
    if len(size) != spatial_dims or not all(isinstance(s, int) and s >= 1 for s in size):
        raise InputError("--spatial_size", f"must be {spatial_dims} whole numbers ≥ 1, got {spatial_size!r}")
    factor = [
        math.prod(s if isinstance(s, int) else s[axis] for s in strides) for axis in range(spatial_dims)
    ]
    if any(s % f for s, f in zip(size, factor, strict=True)):
        raise InputError(
            "--spatial_size",
            f"{size} must be a multiple of {factor} along its axes: the network downsamples by that much",
        )


def check_output_dir(folder: str | os.PathLike) -> None:
    """Make ``folder`` and prove it takes files now, not after an hour of training or inference."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(folder, "--output_dir is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".sonomuscle_write_test_{os.getpid()}"  # one per process under torchrun
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise InputError(folder, f"cannot write outputs here: {err.strerror}") from None


def gathered(files: Sequence[str | os.PathLike], folder: str | os.PathLike) -> Path:
    """``folder`` holding a link to (or, where links are not allowed, a copy of) each of ``files``.

    ``sonomuscle evaluate`` pairs by name within folders; a datalist's references and images may live
    anywhere, so an evaluation config gathers them first.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for file in map(Path, files):
        target = folder / file.name
        target.unlink(missing_ok=True)
        try:
            target.symlink_to(file.resolve())
        except OSError:
            shutil.copy(file, target)
    return folder


def calibration_entry(spacing: Sequence[float] | float | None, depth: float | None) -> dict:
    """The datalist fields for ``spacing`` (mm per pixel: one value, or one per axis) or ``depth`` (mm),
    checked: positive mm, one of the two."""
    if spacing is not None and depth is not None:
        raise InputError(None, "give --spacing or --depth, not both")
    if depth is not None:
        return {"depth": positive_mm("--depth", depth)}
    if spacing is None:
        return {}
    values = [spacing] if isinstance(spacing, (int, float)) else list(spacing)
    if not values:
        raise InputError(None, "--spacing needs a value in mm, e.g. 0.1 or [0.1, 0.1]")
    return {"spacing": [positive_mm("--spacing", v) for v in values]}


# attached on every rank: they take part in collectives (a validator's metrics, MetricsSaver's and
# ClassificationSaver's all_gather), keep per-process state (schedules, resumed weights, cache, early stop),
# change the engine output that metrics read, or write each rank's part of a table that rank 0 joins
# (results, skipped inputs); every other handler writes or logs, on rank 0 only
EVERY_RANK_HANDLERS = (
    ResultsHandler,
    SkippedInputs,
    ValidationHandler,
    IgniteMetricHandler,
    MetricsSaver,
    ClassificationSaver,
    LrScheduleHandler,
    ParamSchedulerHandler,
    CheckpointLoader,
    EarlyStopHandler,
    SmartCacheHandler,
    DecollateBatch,
    PostProcessing,
)


def handlers_for_rank(handlers: Sequence | None, rank: int | None = None) -> list:
    """The ``handlers`` process ``rank`` (default: this process's) attaches in a ``torchrun`` training.

    Rank 0 keeps all; the others keep the ``EVERY_RANK_HANDLERS`` only, so one process writes checkpoints,
    the best model and logs, and no rank skips an all_gather another waits in.
    """
    if rank is None:
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    return [h for h in handlers or () if rank == 0 or isinstance(h, EVERY_RANK_HANDLERS)]


def channel_output(channel: int, keys: tuple[str, str] = ("pred", "label")):
    """An ignite ``output_transform`` giving one channel of ``pred`` and ``label``: per-structure metrics."""

    def transform(output) -> tuple[list, list]:
        preds, labels = from_engine(list(keys))(output)
        return [p[channel : channel + 1] for p in preds], [y[channel : channel + 1] for y in labels]

    return transform


def class_dice_metrics(classes: Mapping[str, int], prefix: str) -> dict[str, MeanDice]:
    """One ``MeanDice`` per named class (channel ``i + 1``, after background), named ``<prefix><class>``:
    per-structure scores in the epoch line and ``MetricsSaver``, whatever classes the data declares."""
    return {
        f"{prefix}{name}": MeanDice(output_transform=channel_output(i + 1)) for i, name in enumerate(classes)
    }


def write_summary(
    output_dir: str | os.PathLike, metrics: dict, measurements: str = "measurements.csv"
) -> Path:
    """``summary.json``: each metric's mean over the images that have it, and mean absolute measurement errors.

    MONAI's aggregate turns "no image has this structure annotated" into 0; the per-image details
    (``<metric>_raw.csv`` from ``MetricsSaver``) keep NaN there, so the summary is taken from them: a
    metric no image could be scored on is null, not 0.
    """
    output_dir = Path(output_dir)
    summary: dict = {"metrics": {}, "n_scored": {}}
    for name, value in metrics.items():
        raw = output_dir / f"{name}_raw.csv"
        if raw.is_file():
            per_image = pd.read_csv(raw)["mean"]
            summary["metrics"][name] = _finite_or_none(per_image.mean())
            summary["n_scored"][name] = int(per_image.notna().sum())
        else:
            summary["metrics"][name] = _finite_or_none(value)
    table = output_dir / measurements
    if table.is_file():
        frame = pd.read_csv(table)
        errors = frame.filter(like="error_").abs()
        # NaN (nothing measurable) becomes null: summary.json stays strict JSON
        summary["measurement_mae"] = {
            k.removeprefix("error_"): _finite_or_none(v) for k, v in errors.mean().items()
        }
        summary["units"] = sorted(frame["units"].dropna().unique().tolist()) if "units" in frame else []
        summary["n_images"] = len(frame)
    return atomic_write_json(output_dir / "summary.json", summary)


def _finite_or_none(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def run_config(bundle_root: str | os.PathLike, config: str, **overrides: object) -> None:
    """Run another config of the same bundle in this process (e.g. ``evaluate.json`` runs ``inference.json``).

    Lets one config build on another's workflow whatever file it was merged with (``train.json`` the Model
    Zoo way, ``inference.json``, or none), instead of copying it.
    """
    from monai.bundle import run

    configs = Path(bundle_root) / "configs"
    run(
        run_id="run",
        config_file=str(configs / f"{config}.json"),
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"),
        bundle_root=str(bundle_root),
        **overrides,
    )
