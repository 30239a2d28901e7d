"""Small helpers bundle configs call: datalists with clear errors, and inference cases from a folder.

A bundle run should fail on a missing datalist with one line that says what to do, and an inference run
over a user's folder should skip an unreadable image (with a warning) rather than stop at it.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import pandas as pd
from monai.data import load_decathlon_datalist
from monai.handlers import from_engine

from sonomuscle.data.readers import SUPPORTED_SUFFIXES, read_ultrasound, suffix_of
from sonomuscle.errors import InputError
from sonomuscle.io import atomic_write_json

logger = logging.getLogger(__name__)


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
        return load_decathlon_datalist(path, True, split, base_dir or path.parent)
    except (ValueError, KeyError) as err:
        raise InputError(path, f"no usable {split!r} list ({str(err).splitlines()[0]})") from None


def inference_cases(
    datalist: str | os.PathLike | None, split: str, input_dir: str | os.PathLike | None = None
) -> list[dict]:
    """``{"image": path}`` cases from ``input_dir`` (every readable image or volume in it) or a datalist split.

    Labels in the datalist are dropped: inference needs only images. Unreadable files are logged and skipped.
    """
    if input_dir:
        folder = Path(input_dir)
        if not folder.is_dir():
            raise InputError(folder, "input folder not found")
        cases = [{"image": str(f)} for f in sorted(folder.iterdir()) if suffix_of(f) in SUPPORTED_SUFFIXES]
    else:
        cases = [
            {k: v for k, v in entry.items() if k in ("image", "spacing")}
            for entry in load_datalist(datalist, split)
        ]
    readable = []
    for case in cases:
        try:
            read_ultrasound(case["image"])
        except InputError as err:
            logger.warning("skipping unreadable image: %s", err)
            continue
        readable.append(case)
    if not readable:
        raise InputError(input_dir or datalist, "no readable images to run on")
    return readable


def channel_output(channel: int, keys: tuple[str, str] = ("pred", "label")):
    """An ignite ``output_transform`` giving one channel of ``pred`` and ``label``: per-structure metrics."""

    def transform(output) -> tuple[list, list]:
        preds, labels = from_engine(list(keys))(output)
        return [p[channel : channel + 1] for p in preds], [y[channel : channel + 1] for y in labels]

    return transform


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
