"""Colour-coded (RGB) label maps → label maps of values, with the user's colour table.

Some tools save each structure as a colour (``nerve=#800000,vessel=#008000``) in an RGB image; colours are
not class values, so the label readers refuse such maps. This writes the same maps as indexed-colour PNGs
whose indices are the classes (1, 2, ... in the order the table gives them, black is background) and
``classes.json`` beside them, what ``sonomuscle datalist --labels DIR --classes DIR/classes.json`` reads.
Edges blended by anti-aliasing (colours between two of the table's, black included) take the nearest colour
of the table; a map holding other colours is skipped with one line naming them, and the others are
written.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from sonomuscle.classes import check_classes, class_name, named_values, write_classes_file
from sonomuscle.data.readers import RASTER_SUFFIXES, suffix_of
from sonomuscle.data.writers import write_indexed_label_map
from sonomuscle.errors import InputError

# how far (Euclidean, 0-255 RGB) a pixel may be from a table colour or a blend of two (anti-aliased edges)
TOLERANCE = 24.0
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")


def parse_colours(text: str) -> dict[str, tuple[int, int, int]]:
    """``NAME=#RRGGBB,...`` or the path of a JSON file holding ``{"NAME": "#RRGGBB", ...}``."""
    colours = {}
    for name, value in named_values(text, "--colours").items():
        match = _HEX.match(str(value).strip())
        if not match:
            raise InputError(None, f"--colours {name}={value}: expected a colour as #RRGGBB")
        colours[name] = tuple(int(match[1][i : i + 2], 16) for i in (0, 2, 4))
    return colours


def colour_label_maps(
    folder: str | os.PathLike, colours: Mapping[str, tuple[int, int, int]], out: str | os.PathLike
) -> tuple[dict[str, int], list[str]]:
    """Convert every colour-coded map in ``folder`` into ``out``; returns the classes and the skipped files'
    one-line reasons (also printed)."""
    folder, out = Path(folder), Path(out)
    classes = check_classes({class_name(name): k for k, name in enumerate(colours, 1)}, "--colours")
    table = np.array([(0, 0, 0), *colours.values()], dtype=float)
    maps = sorted(p for p in folder.iterdir() if p.is_file() and suffix_of(p) in RASTER_SUFFIXES)
    if not maps:
        raise InputError(folder, f"no label map found (looked for {', '.join(RASTER_SUFFIXES)})")
    out.mkdir(parents=True, exist_ok=True)
    skipped = []
    for path in maps:
        try:
            write_indexed_label_map(_values(path, table), out / f"{path.stem}.png")
        except InputError as err:
            skipped.append(str(err))
            print(f"skipped {err}", file=sys.stderr)
    write_classes_file(out, classes)
    return classes, skipped


def _values(path: Path, table: np.ndarray) -> np.ndarray:
    """The class of each pixel: the index of its nearest table colour (0: black, background)."""
    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"), dtype=float)
    except OSError as err:
        raise InputError(path, f"cannot read file ({err})") from None
    distance = np.linalg.norm(rgb[..., None, :] - table, axis=-1)
    far = _blend_distance(rgb, table) > TOLERANCE
    if far.any():
        unknown = np.unique(rgb[far].astype(int), axis=0)
        shown = ", ".join("#" + "".join(f"{c:02x}" for c in colour) for colour in unknown[:4])
        raise InputError(
            path,
            f"{int(far.sum())} pixels of {len(unknown)} colour(s) not in --colours ({shown}"
            f"{', …' if len(unknown) > 4 else ''}): add their structures to the table",
        )
    return distance.argmin(axis=-1).astype(np.uint8)


def _blend_distance(rgb: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Per pixel, the distance to the nearest blend of two table colours (the segment between them)."""
    nearest = np.full(rgb.shape[:-1], np.inf)
    for i in range(len(table)):
        for j in range(i, len(table)):
            start, step = table[i], table[j] - table[i]
            along = np.clip(((rgb - start) @ step) / max(float(step @ step), 1e-9), 0.0, 1.0)
            blend = start + along[..., None] * step
            nearest = np.minimum(nearest, np.linalg.norm(rgb - blend, axis=-1))
    return nearest
