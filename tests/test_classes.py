"""Named classes of label maps: parsed once, checked, carried in the datalist and in the checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from sonomuscle.classes import (
    LabelClasses,
    channel_names,
    check_classes,
    checkpoint_classes,
    datalist_classes,
    parse_classes,
    write_classes_file,
)
from sonomuscle.errors import InputError


def test_parse_classes_from_text_and_json_orders_by_value(tmp_path):
    assert list(parse_classes("vastus_lateralis=2, rectus_femoris=1")) == [
        "rectus_femoris",
        "vastus_lateralis",
    ]
    path = tmp_path / "classes.json"
    path.write_text(json.dumps({"puborectalis": 2, "hiatus": 1}))
    assert parse_classes(str(path)) == {"hiatus": 1, "puborectalis": 2}
    assert channel_names({"b": 2, "a": 1}) == ["background", "a", "b"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("rf=1,rf=2", "twice"),
        ("rf=1,vl=1", "share a label value"),
        ("rf=0", "1..255"),
        ("rf=x", "whole-number"),
        ("1rf=1", "start with a letter"),
        ("background=1", "start with a letter"),
        ("no_such_file.json", "cannot read"),
    ],
)
def test_bad_classes_say_what_is_wrong(text, problem):
    with pytest.raises(InputError, match=problem):
        parse_classes(text)


def test_datalist_without_classes_says_how_to_declare_them(tmp_path):
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": []}))
    with pytest.raises(InputError, match="--classes NAME=VALUE") as err:
        datalist_classes(path)
    assert str(path) in str(err.value)
    path.write_text(json.dumps({"classes": {"rf": 3, "vl": 1}, "training": []}))
    assert datalist_classes(path) == {"vl": 1, "rf": 3}


def test_classes_travel_in_the_checkpoint_and_a_mismatch_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"model": {}, "classes": LabelClasses({"rf": 1, "vl": 2}).state_dict()}, path)
    assert checkpoint_classes(path) == {"rf": 1, "vl": 2}
    other = LabelClasses({"rf": 1, "vm": 2})
    with pytest.raises(InputError, match="trained on classes"):
        other.load_state_dict(torch.load(path, weights_only=True)["classes"])
    torch.save({"model": {}}, path)
    with pytest.raises(InputError, match="holds no 'classes'"):
        checkpoint_classes(path)
    with pytest.raises(InputError, match="model not found"):
        checkpoint_classes(tmp_path / "missing.pt")


def test_classes_file_is_read_back_by_the_checks(tmp_path):
    written = write_classes_file(tmp_path, {"rf": 1})
    assert check_classes(json.loads(written.read_text())) == {"rf": 1}
