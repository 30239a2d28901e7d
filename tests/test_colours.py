"""Colour-coded label maps with the user's colour table → label maps of values, and a datalist from them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from sonomuscle.cli import main
from sonomuscle.data.colours import parse_colours
from sonomuscle.data.readers import load_image
from sonomuscle.errors import InputError

NERVE, VESSEL = (128, 0, 0), (0, 128, 0)


def _colour_map(nerve_rows=slice(2, 6), extra=None) -> np.ndarray:
    rgb = np.zeros((18, 20, 3), np.uint8)
    rgb[nerve_rows, 2:10] = NERVE
    rgb[8:11, 4:14] = VESSEL
    rgb[6, 2:10] = (70, 5, 3)  # an anti-aliased edge below the nerve: nearest is the nerve's colour
    if extra is not None:
        rgb[0, 0] = extra
    return rgb


def test_colour_maps_become_values_in_the_tables_order(tmp_path, capsys):
    maps, out = tmp_path / "maps", tmp_path / "out"
    maps.mkdir()
    Image.fromarray(_colour_map()).save(maps / "a.png")
    Image.fromarray(_colour_map(extra=(0, 0, 255))).save(maps / "b.png")  # a structure not in the table
    code = main(
        ["colour-labels", str(maps), "--colors", "nerve=#800000,blood vessel=#008000", "--out", str(out)]
    )
    assert code == 0
    assert json.loads((out / "classes.json").read_text()) == {"nerve": 1, "blood_vessel": 2}
    values, _ = load_image(out / "a.png", labels=True)
    expected = np.zeros((18, 20), np.int32)
    expected[2:7, 2:10], expected[8:11, 4:14] = 1, 2
    np.testing.assert_array_equal(values.T, expected)
    assert not (out / "b.png").exists()
    err = capsys.readouterr().err
    assert "b.png: 1 pixels of 1 colour(s) not in --colours (#0000ff)" in err

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((18, 20), np.uint8)).save(images / "a.png")
    datalist = tmp_path / "d.json"
    args = ["datalist", "--images", str(images), "--labels", str(out), "--out", str(datalist)]
    assert main([*args, "--classes", str(out / "classes.json"), "--val-fraction", "0"]) == 0
    assert "classes.json" not in capsys.readouterr().err  # the table beside the maps is not a rejected map


def test_colour_tables_from_text_or_json(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"nerve": "#800000", "vessel": "008000"}))
    assert parse_colours(str(tmp_path / "c.json")) == {"nerve": NERVE, "vessel": VESSEL}
    assert parse_colours("nerve=#800000") == {"nerve": NERVE}
    with pytest.raises(InputError, match=r"--colours nerve=red: expected a colour as #RRGGBB"):
        parse_colours("nerve=red")
