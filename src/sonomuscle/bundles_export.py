"""What a bundle ships, and writing one out as a standalone folder (``sonomuscle bundle list|export``).

Standard library only and no ``sonomuscle`` imports: ``setup.py`` loads this file at build time, before the
package (or torch) is installed, so the wheel and ``bundle export`` ship the same files.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from pathlib import Path

# a bundle's shipped parts; everything else under bundles/<name>/ (runs/, eval/, checkpoints) stays behind
SHIPPED_DIRS = ("configs", "docs")
WEIGHTS = ("models/model.pt", "models/model.ts")
ENCODER = "models/pretrained_encoder.pt"  # an image-level bundle's starting encoder (see sonomuscle.weights)
LARGE_FILES = (*WEIGHTS, ENCODER)  # what large_files.yml lists, in its order, where the bundle has it
SHIPPED_FILES = ("LICENSE", "large_files.yml", *LARGE_FILES)
_SKIPPED = ("__pycache__", ".pyc", ".pyo")


def shipped_files(bundle: str | os.PathLike) -> list[Path]:
    """Paths, relative to ``bundle``, of the files that the wheel and an export carry."""
    bundle = Path(bundle)
    found = [
        f.relative_to(bundle)
        for folder in SHIPPED_DIRS
        for f in sorted((bundle / folder).rglob("*"))
        if f.is_file() and not any(part.endswith(_SKIPPED) for part in f.relative_to(bundle).parts)
    ]
    return found + [Path(name) for name in SHIPPED_FILES if (bundle / name).is_file()]


def shipped_weights(bundle: str | os.PathLike) -> list[str]:
    """The weight files present in ``bundle`` (``models/model.pt``, ``models/model.ts``)."""
    return [name for name in WEIGHTS if (Path(bundle) / name).is_file()]


def describe_bundle(bundle: str | os.PathLike) -> str:
    """One line for ``bundle list``: name, version, whether weights ship, task (from ``metadata.json``)."""
    bundle = Path(bundle)
    meta = json.loads((bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))
    weights = ", ".join(Path(w).name for w in shipped_weights(bundle)) or "no weights"
    return f"{bundle.name:<24} {meta.get('version', '?'):<8} {weights:<20} {meta.get('task', '')}"


def export_bundle(bundle: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy ``bundle``'s shipped files to ``dest`` in one step: a reader never sees half a bundle.

    ``dest`` must be absent or empty, so an export never mixes with (or silently replaces) other files.
    """
    bundle, dest = Path(bundle), Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        # an OSError with its path, which the CLI reports as one line (no sonomuscle imports here)
        raise FileExistsError(
            errno.EEXIST, "exists and is not an empty folder; choose a new or empty one", str(dest)
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".tmp-{dest.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()  # not mkdtemp: its 0700 mode would end up on the export
    try:
        for rel in shipped_files(bundle):
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(bundle / rel, tmp / rel)
        if dest.exists():
            dest.rmdir()
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
