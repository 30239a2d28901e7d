"""What every phantom dataset shares: the cases drawn per seed, the training/validation/test split, the PNG
and NIfTI writers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple, TypeVar

import nibabel as nib
import numpy as np
from PIL import Image
from tqdm import tqdm

from sonomuscle.errors import InputError
from sonomuscle.io import atomic_write_json, atomic_write_rows, atomic_write_with

SPLIT_FRACTIONS = (0.15, 0.15)  # validation, test; the rest trains
T = TypeVar("T")


class Case(NamedTuple):
    """One synthetic volume: B-mode (X, Y, Z) in [0, 1], integer label map, and its exact truth row."""

    image: np.ndarray
    label: np.ndarray
    truth: dict[str, float]


def drawn_cases(
    n: int, seed: int, make: Callable[[np.random.Generator], T], desc: str
) -> Iterator[tuple[str, T]]:
    """``("case_000", phantom), ...``: case ``i`` draws from ``default_rng([seed, i])``, so the same seed gives
    the same cases and a case does not change when ``n`` does. A progress bar shows for more than 20."""
    if n < 1:
        raise InputError(None, f"number of phantoms must be ≥ 1, got {n}")
    for i in tqdm(range(n), desc=desc, unit="case", disable=n <= 20):
        yield f"case_{i:03d}", make(np.random.default_rng([seed, i]))


def write_png(path: Path, array: np.ndarray) -> None:
    """8-bit greyscale PNG of an ``(X, Y)`` array: PIL's rows are Y, so it gets the transpose."""
    image = Image.fromarray(np.ascontiguousarray(np.asarray(array).T.astype(np.uint8)))
    atomic_write_with(path, lambda p: image.save(p, format="PNG"))


def write_volume_dataset(
    out: str | Path,
    n: int,
    seed: int,
    make: Callable[[np.random.Generator], Case],
    spacing: tuple[float, float, float],
    desc: str,
) -> Path:
    """Write ``images/``, ``labels/`` (NIfTI, spacing in the affine), ``truth.csv`` and ``datalist.json``.

    Cases are :func:`drawn_cases`.
    """
    out = Path(out)
    affine = np.diag([*spacing, 1.0])
    rows = []
    for name, case in drawn_cases(n, seed, make, desc):
        image = np.round(np.clip(case.image, 0, 1) * 255).astype(np.uint8)
        for folder, volume in (("images", image), ("labels", case.label)):
            img = nib.Nifti1Image(volume, affine)
            img.header.set_xyzt_units("mm")
            atomic_write_with(out / folder / f"{name}.nii.gz", lambda p, img=img: nib.save(img, p))
        rows.append({"case": name, **case.truth})

    atomic_write_rows(out / "truth.csv", rows, significant=None)  # exact, as the phantom was drawn
    return atomic_write_json(out / "datalist.json", split_cases([_volume_entry(r["case"]) for r in rows]))


def split_cases(entries: list[dict]) -> dict[str, list[dict]]:
    """~70/15/15 training/validation/test in case order (cases are i.i.d.); ≥ 1 each from n ≥ 3.

    The test split gets at least 3 cases once n ≥ 12: agreement statistics need 3 pairs.
    """
    n = len(entries)
    n_val, n_test = (max(1, round(f * n)) if n >= 3 else 0 for f in SPLIT_FRACTIONS)
    n_test = max(n_test, 3) if n >= 12 else n_test
    n_train = n - n_val - n_test
    return {
        "training": entries[:n_train],
        "validation": entries[n_train : n_train + n_val],
        "test": entries[n_train + n_val :],
    }


def _volume_entry(name: str) -> dict[str, str]:
    return {"image": f"images/{name}.nii.gz", "label": f"labels/{name}.nii.gz"}
