"""``sonomuscle measure``: muscle architecture of images and folders with a trained bundle, no training.

Runs the bundle's own ``inference.json`` (network, transforms, measures and overlays; no second copy of
the pipeline) over a datalist made from the given paths. Each image is calibrated in this order of trust,
recorded in the ``calibration`` column: the file's own (DICOM ultrasound regions); ``--spacing`` (mm per
pixel); ``--depth`` (the imaged depth the scanner displays, over the rows of the ultrasound picture found
by :func:`sonomuscle.transforms.crop.ultrasound_area`); otherwise none, and lengths are in pixels. A path
that cannot be measured is reported on one line and skipped; the others are measured. A ``flags`` column
says which results to check by eye (:mod:`sonomuscle.measures.plausibility`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sonomuscle.bundle import run_config
from sonomuscle.data.readers import SUPPORTED_SUFFIXES, UltrasoundImage, read_ultrasound, suffix_of
from sonomuscle.errors import InputError
from sonomuscle.handlers.architecture import MEASURES
from sonomuscle.io import atomic_write_json, atomic_write_rows, atomic_write_with
from sonomuscle.measures.plausibility import quality_flags
from sonomuscle.transforms.crop import ultrasound_area
from sonomuscle.workflows import bundle_dir

DEFAULT_BUNDLE = "muscle_architecture_2d"
# picked up from folders so that each gets its "not measured" line instead of passing unnoticed
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov")


@dataclass(frozen=True)
class Calibration:
    """Pixel spacing in mm for the datalist (None: the file's own or none) and where it came from."""

    spacing: tuple[float, float] | None
    source: str  # "file", "spacing", "depth" or "none"


def measure(
    paths: list[str | os.PathLike],
    out: str | os.PathLike,
    spacing: float | None = None,
    depth: float | None = None,
    bundle: str | os.PathLike | None = None,
    overlays: bool = True,
) -> Path:
    """Measure every 2D image in ``paths`` (files or folders); returns ``out/measurements.csv``."""
    for name, value in (("--spacing", spacing), ("--depth", depth)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise InputError(None, f"{name} must be a positive number of mm, got {value}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cases, calibrations = [], {}
    for path in _files(paths):
        try:
            calibration = calibrate(_read_2d(path), spacing, depth)
        except InputError as err:
            print(f"sonomuscle measure: skipped {err}", file=sys.stderr)
            continue
        cases.append({"image": str(path)} | _spacing_entry(calibration))
        calibrations[str(path)] = calibration.source
    if not cases:
        raise InputError(None, "nothing to measure: no readable 2D image among the given paths")
    datalist = atomic_write_json(out / "measure_datalist.json", {"test": cases})
    run_config(
        Path(bundle) if bundle else bundle_dir(DEFAULT_BUNDLE),
        "inference",
        datalist=str(datalist),
        data_split="test",
        input_dir=None,
        output_dir=str(out),
        save_overlay=overlays,
    )
    table = out / "measurements.csv"
    rows = pd.read_csv(table, dtype=str, keep_default_na=False)  # rewritten as read, plus one column
    rows["calibration"] = rows["image"].map(calibrations)
    rows["flags"] = ["; ".join(quality_flags(row)) for row in rows.to_dict("records")]
    atomic_write_rows(table, rows.to_dict("records"))
    write_workbook(rows, out / "measurements.xlsx")
    _report(rows, len(cases), table)
    return table


def write_workbook(rows: pd.DataFrame, path: Path) -> Path:
    """``images`` (the CSV's rows) and ``summary`` (per unit and measure: n, mean, SD, median, range, and
    how many of the images are flagged) sheets; pixels and millimetres are never pooled."""
    images = rows.copy()
    images[list(MEASURES)] = images[list(MEASURES)].apply(pd.to_numeric, errors="coerce")
    measured = images[images["error"] == ""]
    summary = (
        measured.melt(id_vars="units", value_vars=list(MEASURES), var_name="measure")
        .groupby(["units", "measure"], sort=False)["value"]
        .agg(n="count", mean="mean", sd="std", median="median", min="min", max="max")
        .reset_index()
    )
    summary["images_flagged"] = summary["units"].map(
        measured.groupby("units")["flags"].agg(lambda flags: (flags != "").sum())
    )

    def write(target: Path) -> None:
        with pd.ExcelWriter(target, engine="openpyxl") as book:
            images.to_excel(book, sheet_name="images", index=False)
            summary.to_excel(book, sheet_name="summary", index=False)

    return atomic_write_with(path, write)


def calibrate(image: UltrasoundImage, spacing: float | None, depth: float | None) -> Calibration:
    """The most trusted calibration available for one image (see the module docstring)."""
    if image.spacing is not None:
        return Calibration(None, "file")
    if spacing is not None:
        return Calibration((spacing, spacing), "spacing")
    if depth is not None:
        mm = depth / picture_rows(image.array)
        return Calibration((mm, mm), "depth")
    return Calibration(None, "none")


def picture_rows(array: np.ndarray) -> int:
    """Rows (depth axis, spatial axis 1 of an (X, Y) image) of the ultrasound picture in a screen capture."""
    span = float(array.max() - array.min()) or 1.0
    rows = np.flatnonzero(ultrasound_area(((array - array.min()) / span)[None])[0].any(axis=0))
    return int(rows[-1] - rows[0] + 1)


def _files(paths: list[str | os.PathLike]) -> list[Path]:
    """Files as given, and the image files in given folders (sorted), each once; a missing path is reported."""
    files: dict[Path, None] = {}
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(
                f
                for f in path.iterdir()
                if f.is_file() and suffix_of(f) in SUPPORTED_SUFFIXES + VIDEO_SUFFIXES
            )
            files.update(dict.fromkeys(f.resolve() for f in found))
        elif path.exists():
            files[path.resolve()] = None
        else:
            print(f"sonomuscle measure: skipped {path}: not found", file=sys.stderr)
    return list(files)


def _read_2d(path: Path) -> UltrasoundImage:
    image = read_ultrasound(path)
    if image.array.ndim != 2:
        raise InputError(
            path, f"not a 2D image (shape {image.array.shape}); cine loops and volumes are not measured"
        )
    return image


def _spacing_entry(calibration: Calibration) -> dict:
    return {} if calibration.spacing is None else {"spacing": list(calibration.spacing)}


def _report(rows: pd.DataFrame, n_cases: int, table: Path) -> None:
    """What a user needs to read next: how many were measured, where, and whether lengths are pixels."""
    measured = int((rows["error"] == "").sum())
    print(f"sonomuscle measure: {measured} of {n_cases} image(s) measured → {table}")
    flagged = int((rows["flags"] != "").sum())
    if flagged:
        print(f"sonomuscle measure: {flagged} result(s) flagged for a look at the overlay (column `flags`)")
    uncalibrated = int((rows["calibration"] == "none").sum())
    if uncalibrated:
        print(
            f"sonomuscle measure: {uncalibrated} image(s) without calibration: lengths are in PIXELS "
            "(give --spacing MM or --depth MM)"
        )
