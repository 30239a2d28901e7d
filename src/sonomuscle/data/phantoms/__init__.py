"""Synthetic ultrasound phantoms with exact ground truth: the data every bundle runs on out of the box."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from sonomuscle.errors import InputError

# task → module whose ``write_dataset(out, n, seed) -> Path`` writes it (imported only when asked for)
PHANTOM_MODULES = {
    "architecture2d": "sonomuscle.data.phantoms.architecture2d",
    "architecture2d-sequence": "sonomuscle.data.phantoms.architecture2d_sequence",
    "ciliary3d": "sonomuscle.data.phantoms.ciliary",
    "bladder3d": "sonomuscle.data.phantoms.bladder",
    "csa2d": "sonomuscle.data.phantoms.csa2d",
    "classify2d": "sonomuscle.data.phantoms.classify2d",
    "regress2d": "sonomuscle.data.phantoms.regress2d",
}


def write_phantom_dataset(
    task: str, out: str | Path, n: int, seed: int, pennation_range_deg: tuple[float, float] | None = None
) -> Path:
    """Write ``n`` phantoms of ``task`` under ``out`` (deterministic per ``seed``); returns the datalist path.

    ``pennation_range_deg`` narrows the ``architecture2d`` phantoms' pennation angles (e.g. steep ones only).
    """
    if task not in PHANTOM_MODULES:
        raise InputError(None, f"unknown phantom task {task!r}; expected one of {sorted(PHANTOM_MODULES)}")
    options = {}
    if pennation_range_deg is not None:
        low, high = pennation_range_deg
        if task != "architecture2d" or not 0 < low <= high < 90:
            raise InputError(
                None, f"--pennation {low:g},{high:g}: angles between 0 and 90° for --task architecture2d only"
            )
        options["pennation_range_deg"] = (low, high)
    datalist = import_module(PHANTOM_MODULES[task]).write_dataset(Path(out), n, seed, **options)
    print(f"{n} {task} phantoms written to {Path(out)} (datalist: {datalist})")
    return datalist
