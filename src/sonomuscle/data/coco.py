"""COCO segmentation JSON (what CVAT, Label Studio and many other annotation tools export) → label maps.

One indexed-colour PNG per image, named after the image's file, whose palette indices are the category ids,
and ``classes.json`` beside them naming the ids: what ``sonomuscle datalist --labels DIR --classes
DIR/classes.json`` reads. Polygons are filled; run-length encodings are decoded in both forms COCO writes
(a list of counts, or the compressed string of ``pycocotools``). Where annotations overlap, the smaller one
is drawn over the larger, so a structure inside another stays visible.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from skimage.draw import polygon as filled_polygon

from sonomuscle.classes import check_classes, class_name, write_classes_file
from sonomuscle.data.writers import write_indexed_label_map
from sonomuscle.errors import InputError


def coco_label_maps(annotations: str | os.PathLike, out: str | os.PathLike) -> dict[str, int]:
    """Write a label map per image of the COCO file ``annotations`` into ``out``; returns the classes."""
    annotations, out = Path(annotations), Path(out)
    try:
        coco = json.loads(annotations.read_text())
        images = {image["id"]: image for image in coco["images"]}
        categories = {category["id"]: category["name"] for category in coco["categories"]}
        shapes = coco["annotations"]
    except FileNotFoundError:
        raise InputError(annotations, "file not found") from None
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(annotations, f"not a COCO annotation file ({type(err).__name__}: {err})") from None
    classes = check_classes({class_name(name): value for value, name in categories.items()}, annotations)
    out.mkdir(parents=True, exist_ok=True)
    by_image: dict[int, list[dict]] = {image_id: [] for image_id in images}
    for shape in shapes:
        by_image.setdefault(shape["image_id"], []).append(shape)
    for image_id, drawn in by_image.items():
        if image_id not in images:
            raise InputError(annotations, f"annotations of image id {image_id}, which 'images' does not list")
        image = images[image_id]
        label_map = np.zeros((image["height"], image["width"]), np.uint8)
        for shape in sorted(drawn, key=lambda s: -s.get("area", 0)):
            label_map[_mask(shape, label_map.shape, annotations)] = shape["category_id"]
        write_indexed_label_map(label_map, out / f"{Path(image['file_name']).stem}.png")
    write_classes_file(out, classes)
    return classes


def decode_rle(counts: list[int] | str, size: tuple[int, int]) -> np.ndarray:
    """A boolean (height, width) mask from COCO run lengths: alternating runs of 0 and 1, column by column."""
    runs = _compressed_counts(counts) if isinstance(counts, str) else list(counts)
    height, width = size
    if sum(runs) != height * width:
        raise ValueError(f"run lengths cover {sum(runs)} pixels, not {height}×{width}")
    flat = np.repeat(np.arange(len(runs)) % 2 == 1, runs)
    return flat.reshape((height, width), order="F")


def _compressed_counts(text: str) -> list[int]:
    """``pycocotools``' compressed run lengths: each count in 5-bit groups (a continuation bit and a sign
    bit, characters from ``0``), counts from the fourth on as differences to the count two before."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            group = ord(text[position]) - 48
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            position += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def _mask(shape: Mapping, size: tuple[int, int], source: Path) -> np.ndarray:
    """One annotation's pixels: its polygons filled, or its run-length encoding decoded."""
    segmentation = shape.get("segmentation")
    if isinstance(segmentation, dict):
        try:
            mask = decode_rle(segmentation["counts"], tuple(segmentation["size"]))
        except (KeyError, ValueError, IndexError) as err:
            raise InputError(
                source, f"annotation {shape.get('id')}: bad run-length encoding ({err})"
            ) from None
        if mask.shape != size:
            raise InputError(source, f"annotation {shape.get('id')}: encoded {mask.shape}, image {size}")
        return mask
    if not isinstance(segmentation, list) or not segmentation:
        raise InputError(source, f"annotation {shape.get('id')} has no segmentation (polygons or RLE)")
    mask = np.zeros(size, bool)
    for points in segmentation:
        xy = np.asarray(points, dtype=float).reshape(-1, 2)
        rows, columns = filled_polygon(xy[:, 1], xy[:, 0], shape=size)
        mask[rows, columns] = True
    return mask
