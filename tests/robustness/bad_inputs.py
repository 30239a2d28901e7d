"""Builders of broken files, and what "one clear line" means, for the robustness tests."""

from __future__ import annotations

import pickle
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image


def assert_one_line(stderr: str, *names: str) -> str:
    """No traceback; the last line says the problem and names each of ``names`` (files or options)."""
    assert "Traceback" not in stderr, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "nothing was said"
    last = lines[-1]
    assert "error" in last, last
    for name in names:
        assert str(name) in last, f"{name!r} not named in: {last}"
    return last


def png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


def image(shape=(48, 40), seed=0) -> np.ndarray:
    """A grey picture (rows = depth, PIL order)."""
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


def mask(shape=(48, 40)) -> np.ndarray:
    out = np.zeros(shape, np.uint8)
    out[10:16, :] = 255
    return out


def nifti(path: Path, array: np.ndarray, zooms=(1.0, 1.0, 1.0)) -> Path:
    """A NIfTI volume whose header says ``zooms`` (pixdim), whatever they are (0 included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(array, dtype=np.float32), None)
    img.header["pixdim"][1:4] = zooms
    nib.save(img, path)
    return path


class CodePayload:
    """Unpickling it would run a command: a checkpoint like this must be refused, never executed."""

    def __reduce__(self):
        return (print, ("code in a checkpoint ran",))


def evil_checkpoint(path: Path) -> Path:
    with open(path, "wb") as file:
        pickle.dump({"model": CodePayload()}, file)
    return path
