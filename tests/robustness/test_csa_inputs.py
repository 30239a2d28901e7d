"""muscle_csa_2d under bad input, run as a user runs it: one line naming the file and the problem.

Classes that are not declared, or not among the declared, label values outside them and a label map of
another size stop training before it starts, each with its own line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bad_inputs import assert_one_line, image, png
from PIL import Image

from bundle_runs import bundle_run

TINY = {"spatial_size": [64, 64], "channels": [4, 8, 16, 32], "max_epochs": 1, "val_interval": 1}
CLASSES = {"rectus_femoris": 1, "vastus_lateralis": 2}


def _label_map(shape=(48, 40), values=(1, 2)) -> np.ndarray:
    out = np.zeros(shape, np.uint8)
    for i, value in enumerate(values):
        out[5 + 12 * i : 15 + 12 * i, 5:30] = value
    return out


def _datalist(root: Path, *, classes=CLASSES, label=None, entry_extra=None) -> Path:
    """Three cases (two training, one validation) of which the first may be broken by ``label``."""
    entries = []
    for i in range(3):
        png(root / "images" / f"c{i}.png", image(seed=i))
        png(root / "labels" / f"c{i}.png", _label_map() if i or label is None else label)
        entries.append({"image": f"images/c{i}.png", "label": f"labels/c{i}.png", **(entry_extra or {})})
    content = {"training": entries[:2], "validation": entries[2:]}
    if classes is not None:
        content["classes"] = classes
    path = root / "datalist.json"
    path.write_text(json.dumps(content))
    return path


def _fails_in_one_line(datalist: Path, tmp_path: Path, *names: object) -> str:
    done = bundle_run(
        "muscle_csa_2d", ["train"], check=False, datalist=datalist, output_dir=tmp_path / "run", **TINY
    )
    assert done.returncode != 0, done.stdout[-2000:] + done.stderr[-2000:]
    return assert_one_line(done.stderr, *map(str, names))


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (lambda root: _datalist(root, classes=None), 'declares no "classes"'),
        (lambda root: _datalist(root, classes={"rectus femoris": 1}), "must start with a letter"),
        (lambda root: _datalist(root, entry_extra={"annotated": ["soleus"]}), "'annotated' names ['soleus']"),
        (lambda root: _datalist(root, label=_label_map(values=(1, 7))), "values [7"),
        (lambda root: _datalist(root, label=_label_map(shape=(40, 40))), "spatial shape"),
    ],
    ids=["no classes", "bad class name", "unknown annotated class", "value outside classes", "other size"],
)
def test_bad_labels_and_classes_stop_training_in_one_line(tmp_path, build, says):
    datalist = build(tmp_path / "data")
    line = _fails_in_one_line(datalist, tmp_path)
    assert says in line
    assert "datalist.json" in line or "c0.png" in line


def _as_palette(path: Path) -> None:
    """Rewrite a label map as annotation tools save it: indexed colour, 1 dark red, 2 dark green."""
    label_map = Image.open(path).convert("P")
    label_map.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0])
    label_map.save(path)


def test_palette_label_maps_train(tmp_path):
    datalist = _datalist(tmp_path / "data")
    for path in (tmp_path / "data" / "labels").glob("*.png"):
        _as_palette(path)
    done = bundle_run("muscle_csa_2d", ["train"], datalist=datalist, output_dir=tmp_path / "run", **TINY)
    assert done.returncode == 0 and (tmp_path / "run" / "model.pt").is_file()


def test_a_colour_coded_label_map_stops_training_in_one_line(tmp_path):
    datalist = _datalist(tmp_path / "data")
    first = tmp_path / "data" / "labels" / "c0.png"
    _as_palette(first)
    Image.open(first).convert("RGB").save(first)
    line = _fails_in_one_line(datalist, tmp_path, "c0.png")
    assert "colour-coded label map" in line
