"""``sonomuscle datalist``: pair images with label masks, check every pair, split by subject, write JSON.

The output is an MSD-style datalist (``training``/``validation``/``test``) with paths relative to the
datalist's folder, so the folder of images, masks and datalist can move as one. Files that cannot be
used are not skipped silently: each is listed with its reason, on screen and under ``"rejected"``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sonomuscle.classes import CLASSES_FILE, CLASSES_KEY, check_classes, class_name, written_values
from sonomuscle.data.readers import (
    SLICER_SEGMENTATION,
    SUPPORTED_SUFFIXES,
    load_image,
    slicer_segments,
    stem_of,
    suffix_of,
)
from sonomuscle.errors import InputError, positive_mm
from sonomuscle.io import atomic_write_json

SPLITS = ("training", "validation", "test")
MIN_SIDE = 16  # pixels: a smaller 2D image is an icon or a broken export, not ultrasound


def too_small(shape: tuple[int, ...]) -> str | None:
    """Why a 2D image of ``shape`` cannot be learnt from for its size, or None."""
    if len(shape) == 2 and min(shape) < MIN_SIDE:
        return f"{'×'.join(map(str, shape))} pixels: too small to learn from (< {MIN_SIDE} a side)"
    return None


@dataclass
class _Case:
    image: Path
    labels: dict[str, Path]
    spacing: list[float] | None  # only when given on the command line and the file has none
    unit: str  # the subject (with group_by) or the image stem: what a split keeps together
    annotated: list[str] | None = None  # with partial label maps: the classes this image's map outlines


@dataclass
class Rejections:
    """Every file left out, with why; paths as they will appear in the datalist."""

    root: Path
    items: list[dict[str, str]] = field(default_factory=list)

    def add(self, path: Path, reason: str) -> None:
        self.items.append({"file": relative_path(path, self.root), "reason": reason})


def build_datalist(
    images: Path,
    labels: dict[str, Path],
    out: Path,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    folds: int | None = None,
    group_by: str | None = None,
    seed: int = 0,
    spacing: float | None = None,
    classes: Mapping[str, int] | None = None,
    partial: bool = False,
) -> dict:
    """Write the datalist JSON to ``out`` and return it.

    Files pair by stem (``img.png`` ↔ ``img.tif``; ``.nii.gz`` is one suffix). An image keeps the label
    kinds it has; one with none is rejected. ``group_by`` is a regex whose first group, searched in the
    image's file name, names the subject: all images of a subject land in one split and one fold, and
    the fractions count subjects. With ``folds=K`` the non-test subjects are dealt into K folds balanced
    by image count; ``validation`` is fold 0 and ``training`` the rest (``val_fraction`` is then unused),
    and every entry carries its ``"fold"`` so a bundle can train on any other fold.
    """
    images, out = Path(images), Path(out)
    pattern = check_split_arguments(val_fraction, test_fraction, folds, group_by, spacing)
    rejected = Rejections(out.parent)
    image_files = scan_folder(images, rejected)
    label_files = {key: scan_folder(Path(folder), rejected) for key, folder in labels.items()}
    if classes is None:
        classes = segment_classes([path for files in label_files.values() for path in files.values()])
    classes = None if classes is None else check_classes(classes, "--classes")
    if partial and classes is None:
        raise InputError(None, "--partial is for label maps of named classes: give --classes too")

    cases = []
    for stem, image_path in tqdm(sorted(image_files.items()), desc="checking pairs", unit="image"):
        found = {key: files.pop(stem) for key, files in label_files.items() if stem in files}
        case = _check_case(image_path, found, pattern, spacing, rejected, classes, partial)
        if case is not None:
            cases.append(case)
    for key, files in label_files.items():
        for path in files.values():
            rejected.add(path, f"no image named {stem_of(path)}.* in {images} for label {key!r}")

    for item in rejected.items:
        print(f"rejected {item['file']}: {item['reason']}", file=sys.stderr)
    if not cases:
        raise InputError(
            images, f"no image could be paired with a usable label ({len(rejected.items)} files rejected)"
        )

    assignment = split_units(
        sorted({c.unit for c in cases}), cases, val_fraction, test_fraction, folds, seed, images
    )
    header = {} if classes is None else {CLASSES_KEY: classes}
    return write_datalist(
        out,
        header,
        cases,
        assignment,
        lambda case, fold: _entry(case, out.parent, group_by is not None, fold),
        rejected,
    )


def write_datalist(
    out: Path,
    header: dict,
    cases: Sequence,
    assignment: dict[str, tuple[str, int | None]],
    entry: Callable[[Any, int | None], dict],
    rejected: Rejections,
) -> dict:
    """Write ``header`` (classes, targets), each case's ``entry(case, fold)`` in the split its unit was
    assigned, and the rejected files to ``out``; say what went where on one line; return the datalist."""
    datalist = dict(header) | {split: [] for split in SPLITS}
    for case in cases:
        split, fold = assignment[case.unit]
        datalist[split].append(entry(case, fold))
    datalist["rejected"] = rejected.items
    atomic_write_json(out, datalist)
    print(
        f"wrote {out}: {len(datalist['training'])} training, {len(datalist['validation'])} validation, "
        f"{len(datalist['test'])} test, {len(rejected.items)} rejected"
    )
    return datalist


def check_split_arguments(
    val_fraction: float, test_fraction: float, folds: int | None, group_by: str | None, spacing: float | None
) -> re.Pattern | None:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise InputError(
            None, f"fractions must be in [0, 1) and sum below 1, got val {val_fraction}, test {test_fraction}"
        )
    if folds is not None and folds < 2:
        raise InputError(None, f"--folds must be at least 2, got {folds}")
    if spacing is not None:
        positive_mm("--spacing", spacing)
    if group_by is None:
        return None
    try:
        pattern = re.compile(group_by)
    except re.error as err:
        raise InputError(None, f"--group-by {group_by!r} is not a regular expression: {err}") from err
    if pattern.groups < 1:
        raise InputError(None, f"--group-by {group_by!r} needs a group naming the subject, e.g. '^(S\\d+)_'")
    return pattern


def segment_classes(label_files: list[Path]) -> dict[str, int] | None:
    """The classes that 3D Slicer segmentation files name, when every label file is one (else None): each
    segment's name as a class name, with its label value."""
    if not label_files or any(suffix_of(path) != SLICER_SEGMENTATION for path in label_files):
        return None
    classes: dict[str, int] = {}
    for path in label_files:
        for name, value in slicer_segments(path).items():
            name = class_name(name)
            if classes.setdefault(name, value) != value:
                raise InputError(path, f"segment {name!r} has value {value}, {classes[name]} in other files")
    return classes


def scan_folder(folder: Path, rejected: Rejections) -> dict[str, Path]:
    """Stem → file for the readable formats in ``folder``; other files and clashing stems are rejected."""
    if not folder.is_dir():
        raise InputError(folder, "folder not found")
    files: dict[str, Path] = {}
    # classes.json names the values of the label maps beside it (coco-labels, colour-labels, bundle outputs)
    listed = (p for p in folder.iterdir() if p.is_file() and p.name != CLASSES_FILE)
    for path in sorted(p for p in listed if not p.name.startswith(".")):
        stem = stem_of(path)
        if suffix_of(path) not in SUPPORTED_SUFFIXES:
            rejected.add(path, f"unsupported file type {suffix_of(path) or '(none)'!r}")
        elif stem in files:
            rejected.add(path, f"same name as {files[stem].name}; cannot tell which to pair")
        else:
            files[stem] = path
    if not files:
        raise InputError(folder, f"no image files found (looked for {', '.join(SUPPORTED_SUFFIXES)})")
    return files


def _check_case(
    image_path: Path,
    labels: dict[str, Path],
    pattern: re.Pattern | None,
    spacing: float | None,
    rejected: Rejections,
    classes: dict[str, int] | None,
    partial: bool,
) -> _Case | None:
    """Read the image and its masks; keep the masks that match it, or reject it (and say why)."""
    reason = None
    if not labels:
        reason = "no label file with the same name"
    elif pattern is not None and not (match := pattern.search(image_path.name)):
        reason = f"file name does not match --group-by {pattern.pattern!r}"
    else:
        try:
            image, file_spacing = load_image(image_path)
        except InputError as err:
            reason = err.problem
        else:
            reason = too_small(image.shape)
    if reason is not None:
        rejected.add(image_path, reason)
        for path in labels.values():
            rejected.add(path, f"its image {image_path.name} was rejected")
        return None

    kept, present = {}, set()
    for key, path in labels.items():
        try:
            mask, _ = load_image(path, mask=classes is None, labels=classes is not None)
        except InputError as err:
            rejected.add(path, err.problem)
            continue
        outside = [] if classes is None else sorted(set(np.unique(mask).tolist()) - {0, *classes.values()})
        if outside:
            rejected.add(
                path,
                f"values {written_values(outside[:6])} are not among the declared classes {classes}",
            )
        elif mask.shape != image.shape:
            rejected.add(
                path, f"size {mask.shape} differs from its image {image_path.name} {image.shape} (X, Y[, Z])"
            )
        else:
            kept[key] = path
            present |= set(np.unique(mask).tolist())
    annotated = [name for name, value in (classes or {}).items() if value in present] if partial else None
    if kept and annotated == []:
        rejected.add(image_path, "its label map outlines no class (with --partial it would teach nothing)")
        return None
    if not kept:
        rejected.add(image_path, "none of its label files is usable")
        return None
    return _Case(
        image=image_path,
        labels=kept,
        spacing=[spacing] * image.ndim if spacing is not None and file_spacing is None else None,
        unit=match.group(1) if pattern is not None else stem_of(image_path),
        annotated=annotated,
    )


def split_units(
    units: list[str],
    cases: list[_Case],
    val_fraction: float,
    test_fraction: float,
    folds: int | None,
    seed: int,
    images: Path,
) -> dict[str, tuple[str, int | None]]:
    """Unit (subject or image) → (split, fold); a seeded shuffle, so the same seed gives the same split."""
    order = [units[i] for i in np.random.default_rng(seed).permutation(len(units))]
    n_test = _count(test_fraction, len(order))
    test, rest = order[:n_test], order[n_test:]
    if folds is not None:
        if folds > len(rest):
            raise InputError(
                images, f"{len(rest)} subjects/images outside the test split cannot fill {folds} folds"
            )
        fold_of = _deal_folds(rest, cases, folds)
        validation = {u for u in rest if fold_of[u] == 0}
    else:
        fold_of = {}
        validation = set(rest[: _count(val_fraction, len(order))])
    if len(rest) <= len(validation):
        raise InputError(
            images, f"only {len(order)} subjects/images: too few to split into training and validation"
        )
    assignment = {u: ("test", None) for u in test}
    for unit in rest:
        assignment[unit] = ("validation" if unit in validation else "training", fold_of.get(unit))
    return assignment


def _count(fraction: float, n: int) -> int:
    """A non-zero fraction always gets at least one unit."""
    return max(1, round(fraction * n)) if fraction > 0 else 0


def _deal_folds(units: list[str], cases: list[_Case], folds: int) -> dict[str, int]:
    """Largest subject first into the fold with fewest images (GroupKFold's rule), order from the shuffle."""
    sizes = {u: 0 for u in units}
    for case in cases:
        if case.unit in sizes:
            sizes[case.unit] += 1
    fill = [0] * folds
    fold_of = {}
    for unit in sorted(units, key=lambda u: -sizes[u]):  # stable: equal sizes keep the shuffled order
        fold_of[unit] = int(np.argmin(fill))
        fill[fold_of[unit]] += sizes[unit]
    return fold_of


def _entry(case: _Case, root: Path, with_subject: bool, fold: int | None) -> dict:
    entry: dict = {"image": relative_path(case.image, root)}
    entry.update({key: relative_path(path, root) for key, path in case.labels.items()})
    if case.spacing is not None:
        entry["spacing"] = case.spacing
    if case.annotated is not None:
        entry["annotated"] = case.annotated
    if with_subject:
        entry["subject"] = case.unit
    if fold is not None:
        entry["fold"] = fold
    return entry


def relative_path(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()
