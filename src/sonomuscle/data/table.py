"""``sonomuscle datalist --table``: datalists for image-level tasks from a folder of images and a CSV table.

Classification and state regression have no masks: what an image teaches is a row of a table (its class,
or its joint angle and torque) and who it came from. Every row and every image is checked, and each one
left out is listed by name with its reason (a CSV row by its line number), so a typo in a spreadsheet of
hundreds of rows is found in one run. Splits keep a subject's images together, as the segmentation
datalists do; ``--leave-one-subject-out`` gives every subject a fold of its own.

Entries: classification ``{"image", "label": class index, "class": name}`` with ``"class_names"`` at the
top (index order); regression ``{"image", "label": [values in target order]}`` with ``"targets"``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from sonomuscle.data.datalist import (
    Rejections,
    check_split_arguments,
    relative_path,
    scan_folder,
    split_units,
    too_small,
    write_datalist,
)
from sonomuscle.data.readers import load_image, stem_of
from sonomuscle.errors import InputError

CLASS_NAMES_KEY = "class_names"
TARGETS_KEY = "targets"


@dataclass
class _Columns:
    subject: str | None
    class_column: str | None
    class_names: list[str] | None
    targets: Sequence[str]
    box: Sequence[str] | None


@dataclass
class _Row:
    image: Path
    label: int | list[float]
    class_name: str | None = None
    unit: str = ""  # the subject, or the image stem without a subject column: what a split keeps together
    spacing: list[float] | None = None  # only when given on the command line and the file has none
    crop: list[int] | None = None
    roi: Path | None = None


def build_table_datalist(
    images: Path,
    table: Path,
    out: Path,
    *,
    targets: Sequence[str] = (),
    class_column: str | None = None,
    class_names: Sequence[str] | None = None,
    subject_column: str | None = None,
    image_column: str = "image",
    roi_masks: Path | None = None,
    box_columns: Sequence[str] | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    folds: int | None = None,
    leave_one_subject_out: bool = False,
    seed: int = 0,
    spacing: float | None = None,
) -> dict:
    """Write the datalist JSON to ``out`` and return it.

    Give ``class_column`` (classification; ``class_names`` fixes the classes and their order, otherwise
    the sorted values found) or one or more ``targets`` (regression), not both. A table cell names an
    image by file name or stem in ``images``. A region of interest comes from a mask of the same name in
    ``roi_masks`` (entry ``"roi"``) or from four ``box_columns`` x, y, width, height in pixels (``"crop"``).
    """
    images, table, out = Path(images), Path(table), Path(out)
    if bool(class_column) == bool(targets):
        raise InputError(table, "give either --class-column (classification) or --target (regression)")
    if leave_one_subject_out and not subject_column:
        raise InputError(table, "--leave-one-subject-out needs --subject-column")
    check_split_arguments(val_fraction, test_fraction, folds, None, spacing)
    if box_columns is not None and len(box_columns) != 4:
        raise InputError(table, f"--box-columns needs four columns x,y,width,height, got {list(box_columns)}")
    wanted = [image_column, *targets, *filter(None, (class_column, subject_column)), *(box_columns or [])]
    frame = _read_table(table, wanted)
    if class_column and class_names is None:
        class_names = sorted({v for v in frame[class_column] if v})
    if class_names is not None:
        class_names = _check_class_names(class_names, table)

    columns = _Columns(subject_column, class_column, class_names, targets, box_columns)
    rejected = Rejections(out.parent)
    files = scan_folder(images, rejected)
    masks = scan_folder(Path(roi_masks), rejected) if roi_masks is not None else None
    by_name = {**files, **{path.name: path for path in files.values()}}
    seen: dict[Path, int] = {}
    rows = []
    for index, record in tqdm(frame.iterrows(), total=len(frame), desc="checking rows", unit="row"):
        line = int(index) + 2  # the header is line 1
        row = None
        image, problem = _find_image(record[image_column], image_column, by_name, seen)
        if image is not None:
            seen[image] = line
            problem, row = _check_values(record, image, columns)
        if row is not None:
            problem, file_spacing = _read_image(image)
        if problem is None and masks is not None:
            row.roi = masks.pop(stem_of(image), None)
            problem = None if row.roi else f"no ROI mask named {stem_of(image)}.* in {roi_masks}"
        if problem is not None:
            named = f" ({image.name})" if image is not None else ""
            rejected.items.append({"file": f"{table.name} line {line}{named}", "reason": problem})
            continue
        row.unit = record[subject_column] if subject_column else stem_of(row.image)
        if spacing is not None and file_spacing is None:
            row.spacing = [spacing, spacing]
        rows.append(row)
    for path in sorted(set(files.values()) - set(seen)):
        rejected.add(path, f"no row of {table.name} names it")
    for path in (masks or {}).values():
        rejected.add(path, "ROI mask of no image in the table")

    for item in rejected.items:
        print(f"rejected {item['file']}: {item['reason']}", file=sys.stderr)
    if not rows:
        raise InputError(table, f"no row names a usable image in {images} ({len(rejected.items)} rejected)")

    units = sorted({row.unit for row in rows})
    if leave_one_subject_out:
        folds, test_fraction = len(units), 0.0
    assignment = split_units(units, rows, val_fraction, test_fraction, folds, seed, images)
    header = {CLASS_NAMES_KEY: list(class_names)} if class_column else {TARGETS_KEY: list(targets)}
    return write_datalist(
        out,
        header,
        rows,
        assignment,
        lambda row, fold: _entry(row, out.parent, subject_column is not None, fold),
        rejected,
    )


def _read_table(table: Path, columns: list[str]) -> pd.DataFrame:
    """Every cell as text (empty when blank), so a value is checked, and reported, as the user typed it."""
    if not table.is_file():
        raise InputError(table, "table not found")
    try:
        frame = pd.read_csv(table, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(table, f"not a readable CSV table ({str(err).splitlines()[0]})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(
            table, f"no column {', '.join(map(repr, missing))} (columns: {', '.join(frame.columns)})"
        )
    return frame.apply(lambda column: column.str.strip())


def _check_class_names(names: Sequence[str], table: Path) -> list[str]:
    names = [str(n).strip() for n in names]
    if len(names) < 2:
        raise InputError(table, f"classification needs at least 2 classes, got {names}")
    if len(set(names)) != len(names) or "" in names:
        raise InputError(table, f"class names must be distinct and non-empty, got {names}")
    return names


def _find_image(
    cell: str, column: str, by_name: dict[str, Path], seen: dict[Path, int]
) -> tuple[Path | None, str | None]:
    """(the image a cell names, None) or (None, why not); a cell may hold a file name, a stem or a path."""
    if not cell:
        return None, f"no image named in column {column!r}"
    image = by_name.get(cell) or by_name.get(Path(cell).name) or by_name.get(stem_of(Path(cell)))
    if image is None:
        return None, f"image {cell!r} is not in the images folder"
    if image in seen:
        return None, f"{image.name} is already named on line {seen[image]}"
    return image, None


def _check_values(record: pd.Series, image: Path, columns: _Columns) -> tuple[str | None, _Row | None]:
    """(None, the row) or (why the row's values cannot be used, None)."""
    if columns.subject and not record[columns.subject]:
        return f"no subject in column {columns.subject!r}", None
    if columns.class_column:
        value = record[columns.class_column]
        if not value:
            return f"no class in column {columns.class_column!r}", None
        if value not in columns.class_names:
            return f"unknown class {value!r} (classes: {', '.join(columns.class_names)})", None
        row = _Row(image, columns.class_names.index(value), value)
    else:
        problem, values = _numbers(record, columns.targets, "target")
        if problem:
            return problem, None
        row = _Row(image, values)
    if columns.box:
        problem, box = _numbers(record, columns.box, "box column")
        if problem or any(v != round(v) for v in box) or box[2] < 1 or box[3] < 1:
            return problem or f"box {box} is not whole pixels x, y and a positive width, height", None
        row.crop = [int(v) for v in box]
    return None, row


def _numbers(record: pd.Series, names: Sequence[str], what: str) -> tuple[str | None, list[float]]:
    """(None, the columns' values) or (why one is not a finite number, [])."""
    values = []
    for name in names:
        text = record[name]
        if not text:
            return f"no value for {what} {name!r}", []
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            return f"{what} {name!r} is {text!r}, not a finite number", []
        values.append(value)
    return None, values


def _read_image(path: Path) -> tuple[str | None, tuple[float, ...] | None]:
    """(why the image cannot be learnt from, or None; the spacing its file carries, or None)."""
    try:
        array, spacing = load_image(path)
    except InputError as err:
        return err.problem, None
    if array.ndim != 2:
        return f"{array.ndim}D; image-level bundles take 2D images (one frame)", None
    problem = too_small(array.shape)
    return problem, None if problem else spacing


def _entry(row: _Row, root: Path, with_subject: bool, fold: int | None) -> dict:
    entry: dict = {"image": relative_path(row.image, root), "label": row.label}
    if row.class_name is not None:
        entry["class"] = row.class_name
    if row.spacing is not None:
        entry["spacing"] = row.spacing
    if row.crop is not None:
        entry["crop"] = row.crop
    if row.roi is not None:
        entry["roi"] = relative_path(row.roi, root)
    if with_subject:
        entry["subject"] = row.unit
    if fold is not None:
        entry["fold"] = fold
    return entry
