"""COCO segmentation JSON → label maps: polygons, both run-length forms, overlaps, and the datalist after."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sonomuscle.cli import main
from sonomuscle.data.coco import decode_rle
from sonomuscle.data.readers import load_image

HEIGHT, WIDTH = 20, 30


@pytest.mark.parametrize(
    ("counts", "size", "ones"),
    [
        ("04", (2, 2), [(0, 0), (1, 0), (0, 1), (1, 1)]),  # [0, 4]: all four pixels
        ("5123", (3, 4), [(2, 1), (2, 2), (0, 3), (1, 3), (2, 3)]),  # [5, 1, 2, 4]: the 4th as 4 - 1
        # [2, 5, 1, 3, 1]: the 4th as 3 - 5 = -2 ("N"), the 5th as 1 - 1
        ("251N0", (3, 4), [(2, 0), (0, 1), (1, 1), (2, 1), (0, 2), (2, 2), (0, 3), (1, 3)]),
        ("T3:", (10, 11), [(row, 10) for row in range(10)]),  # [100, 10]: a count in two characters
        ([5, 1, 2, 4], (3, 4), [(2, 1), (2, 2), (0, 3), (1, 3), (2, 3)]),  # uncompressed
    ],
)
def test_run_lengths_decode_column_by_column(counts, size, ones):
    """Strings worked out by hand from pycocotools' encoder (rleToString): 5-bit groups from "0", counts
    from the fourth on as differences to the count two before."""
    mask = decode_rle(counts, size)
    assert mask.shape == size
    assert sorted(zip(*np.nonzero(mask), strict=True)) == sorted(ones)


def test_run_lengths_that_do_not_cover_the_image_are_refused():
    with pytest.raises(ValueError, match="cover 5 pixels"):
        decode_rle([2, 3], (2, 2))


def _coco(tmp_path: Path) -> Path:
    """Two images: a nerve (polygon) inside a blood vessel (run lengths) on one, only a vessel on the other."""
    vessel = np.zeros((HEIGHT, WIDTH), bool)
    vessel[4:16, 5:25] = True
    flat = vessel.flatten(order="F").astype(int)
    changes = np.flatnonzero(np.diff(np.r_[0, flat, 1 - flat[-1]]))
    counts = np.diff(np.r_[0, changes]).tolist()
    coco = {
        "images": [
            {"id": 1, "file_name": "scans/a.png", "height": HEIGHT, "width": WIDTH},
            {"id": 2, "file_name": "b.png", "height": HEIGHT, "width": WIDTH},
        ],
        "categories": [{"id": 1, "name": "nerve"}, {"id": 2, "name": "blood vessel"}],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 1,
                "area": 24,
                "segmentation": [[8, 6, 14, 6, 14, 10, 8, 10]],
            },
            {
                "id": 11,
                "image_id": 1,
                "category_id": 2,
                "area": 240,
                "segmentation": {"counts": counts, "size": [HEIGHT, WIDTH]},
            },
            {
                "id": 12,
                "image_id": 2,
                "category_id": 2,
                "area": 240,
                "segmentation": {"counts": counts, "size": [HEIGHT, WIDTH]},
            },
        ],
    }
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(coco))
    return path


def test_coco_annotations_become_label_maps_a_datalist_takes(tmp_path, capsys):
    out = tmp_path / "maps"
    assert main(["coco-labels", str(_coco(tmp_path)), "--out", str(out)]) == 0
    assert json.loads((out / "classes.json").read_text()) == {"nerve": 1, "blood_vessel": 2}
    a, _ = load_image(out / "a.png", labels=True)
    a = a.T  # rows, columns as the annotation tool drew them
    assert a[8, 10] == 1  # the nerve, drawn over the larger vessel it lies in
    assert a[12, 20] == 2 and a[2, 2] == 0 and a[4:16, 5:25].astype(bool).all()
    assert (a == 1).sum() == 5 * 7  # the polygon's rows 6-10 and columns 8-14
    assert Image.open(out / "a.png").mode == "P"

    images = tmp_path / "images"
    images.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.zeros((HEIGHT, WIDTH), np.uint8)).save(images / f"{name}.png")
    datalist = tmp_path / "d.json"
    args = ["datalist", "--images", str(images), "--labels", str(out), "--out", str(datalist)]
    assert main([*args, "--classes", str(out / "classes.json"), "--val-fraction", "0.5"]) == 0
    written = json.loads(datalist.read_text())
    assert written["classes"] == {"nerve": 1, "blood_vessel": 2}
    assert len(written["training"]) + len(written["validation"]) == 2


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{not json", "not a COCO annotation file"),
        (json.dumps({"images": []}), "not a COCO annotation file (KeyError"),
        (
            json.dumps(
                {"images": [], "categories": [{"id": 1, "name": "a"}], "annotations": [{"image_id": 7}]}
            ),
            "image id 7, which 'images' does not list",
        ),
    ],
)
def test_a_bad_coco_file_is_one_line(tmp_path, capsys, content, says):
    (tmp_path / "bad.json").write_text(content)
    assert main(["coco-labels", str(tmp_path / "bad.json"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.json" in err and says in err
