"""`sonomuscle datalist --table`: every bad row and unlisted image is named; splits keep subjects whole."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from sonomuscle.cli import main
from sonomuscle.data.table import build_table_datalist
from sonomuscle.errors import InputError

HEADER = "image,subject,muscle,angle,torque"


@pytest.fixture
def folder(tmp_path):
    """12 readable 40×50 images of 4 subjects, a table row for each of the first 10."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray((rng.random((40, 50)) * 255).astype(np.uint8)).save(images / f"img_{i:02d}.png")
    rows = [f"img_{i:02d}.png,s{i % 4},{'ab'[i % 2]},{i * 3},{i * 0.5}" for i in range(10)]
    return tmp_path, rows


def _write(tmp_path, rows, header=HEADER):
    table = tmp_path / "labels.csv"
    table.write_text("\n".join([header, *rows]) + "\n")
    return table


def test_classification_entries_carry_index_and_name_in_the_given_order(folder):
    tmp_path, rows = folder
    table = _write(tmp_path, rows)
    datalist = build_table_datalist(
        tmp_path / "images", table, tmp_path / "dl.json", class_column="muscle", class_names=["b", "a"]
    )
    assert datalist["class_names"] == ["b", "a"]
    entries = [e for split in ("training", "validation", "test") for e in datalist[split]]
    assert len(entries) == 10
    for entry in entries:
        number = int(entry["image"].split("_")[1][:2])
        assert entry["class"] == "ab"[number % 2]
        assert entry["label"] == ["b", "a"].index(entry["class"])
    assert json.loads((tmp_path / "dl.json").read_text())["class_names"] == ["b", "a"]


def test_regression_entries_hold_targets_in_order_and_subjects_stay_in_one_split(folder):
    tmp_path, rows = folder
    table = _write(tmp_path, rows)
    datalist = build_table_datalist(
        tmp_path / "images",
        table,
        tmp_path / "dl.json",
        targets=["torque", "angle"],
        subject_column="subject",
        test_fraction=0.25,
    )
    assert datalist["targets"] == ["torque", "angle"]
    split_of = {}
    for split in ("training", "validation", "test"):
        for entry in datalist[split]:
            number = int(entry["image"].split("_")[1][:2])
            assert entry["label"] == pytest.approx([number * 0.5, number * 3])
            assert split_of.setdefault(entry["subject"], split) == split
    assert set(split_of.values()) == {"training", "validation", "test"}


def test_every_bad_row_and_unlisted_image_is_named_with_its_reason(folder, capsys):
    tmp_path, rows = folder
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "images" / "tiny.png")
    (tmp_path / "images" / "broken.png").write_text("not a picture")
    rows += [
        "img_10,s1,c,5,abc",  # line 12: stem only (fine), unknown class and a torque that is not a number
        "ghost.png,s2,a,1,1",  # line 13
        "img_03.png,s3,a,1,1",  # line 14: already on line 5
        "tiny.png,s1,a,1,1",  # line 15
        "broken.png,s1,a,1,1",  # line 16
        "img_11.png,,a,,1",  # line 17: no subject, no angle
    ]
    table = _write(tmp_path, rows)
    common = dict(subject_column="subject")
    classified = build_table_datalist(
        tmp_path / "images",
        table,
        tmp_path / "c.json",
        class_column="muscle",
        class_names=["a", "b"],
        **common,
    )
    reasons = {item["file"]: item["reason"] for item in classified["rejected"]}
    assert reasons == {
        "labels.csv line 12 (img_10.png)": "unknown class 'c' (classes: a, b)",
        "labels.csv line 13": "image 'ghost.png' is not in the images folder",
        "labels.csv line 14": "img_03.png is already named on line 5",
        "labels.csv line 15 (tiny.png)": "8×8 pixels: too small to learn from (< 16 a side)",
        "labels.csv line 16 (broken.png)": reasons["labels.csv line 16 (broken.png)"],
        "labels.csv line 17 (img_11.png)": "no subject in column 'subject'",
    }
    assert "cannot read" in reasons["labels.csv line 16 (broken.png)"]
    assert "rejected labels.csv line 13: image 'ghost.png'" in capsys.readouterr().err

    regressed = build_table_datalist(
        tmp_path / "images", table, tmp_path / "r.json", targets=["angle", "torque"], **common
    )
    reasons = {item["file"]: item["reason"] for item in regressed["rejected"]}
    assert reasons["labels.csv line 12 (img_10.png)"] == "target 'torque' is 'abc', not a finite number"
    assert reasons["labels.csv line 17 (img_11.png)"] == "no subject in column 'subject'"
    assert sum(len(regressed[s]) for s in ("training", "validation", "test")) == 10


def test_an_image_without_a_row_is_rejected_by_name(folder):
    tmp_path, rows = folder
    table = _write(tmp_path, rows)
    datalist = build_table_datalist(tmp_path / "images", table, tmp_path / "dl.json", targets=["angle"])
    assert {item["file"]: item["reason"] for item in datalist["rejected"]} == {
        "images/img_10.png": "no row of labels.csv names it",
        "images/img_11.png": "no row of labels.csv names it",
    }


def test_leave_one_subject_out_gives_each_subject_its_own_fold(folder):
    tmp_path, rows = folder
    table = _write(tmp_path, rows)
    datalist = build_table_datalist(
        tmp_path / "images",
        table,
        tmp_path / "dl.json",
        targets=["angle"],
        subject_column="subject",
        leave_one_subject_out=True,
    )
    entries = datalist["training"] + datalist["validation"]
    assert not datalist["test"]
    folds = {}
    for entry in entries:
        assert folds.setdefault(entry["subject"], entry["fold"]) == entry["fold"]
    assert sorted(folds.values()) == [0, 1, 2, 3]
    assert {e["fold"] for e in datalist["validation"]} == {0}


@pytest.mark.parametrize(
    ("header", "kwargs", "problem"),
    [
        (
            HEADER,
            {"targets": ["angel"]},
            "no column 'angel' (columns: image, subject, muscle, angle, torque)",
        ),
        (HEADER, {}, "give either --class-column (classification) or --target (regression)"),
        (HEADER, {"class_column": "muscle", "class_names": ["a"]}, "classification needs at least 2 classes"),
        (HEADER, {"targets": ["angle"], "leave_one_subject_out": True}, "needs --subject-column"),
    ],
)
def test_a_table_that_cannot_be_used_is_one_line(folder, header, kwargs, problem):
    tmp_path, rows = folder
    table = _write(tmp_path, rows, header)
    with pytest.raises(InputError, match=problem.replace("(", r"\(").replace(")", r"\)")) as err:
        build_table_datalist(tmp_path / "images", table, tmp_path / "dl.json", **kwargs)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "dl.json").exists()


def test_cli_builds_a_table_datalist_and_refuses_one_without_labels_or_table(folder, capsys):
    tmp_path, rows = folder
    table = _write(tmp_path, rows)
    out = tmp_path / "dl.json"
    common = ["datalist", "--images", str(tmp_path / "images"), "--out", str(out)]
    assert main([*common, "--table", str(table), "--target", "angle", "--target", "torque"]) == 0
    assert json.loads(out.read_text())["targets"] == ["angle", "torque"]
    assert main(common) == 2
    assert "give --labels DIR (segmentation) or --table CSV" in capsys.readouterr().err


def test_a_region_of_interest_comes_from_a_mask_or_box_columns(folder):
    tmp_path, rows = folder
    masks = tmp_path / "roi"
    masks.mkdir()
    for i in range(9):  # img_09 has none
        Image.fromarray(np.zeros((40, 50), np.uint8)).save(masks / f"img_{i:02d}.png")
    table = _write(tmp_path, [f"{row},{i},{i + 1},20,10" for i, row in enumerate(rows)], HEADER + ",x,y,w,h")
    with_masks = build_table_datalist(
        tmp_path / "images", table, tmp_path / "m.json", targets=["angle"], roi_masks=masks
    )
    entries = with_masks["training"] + with_masks["validation"]
    assert sorted(e["roi"] for e in entries) == [f"roi/img_{i:02d}.png" for i in range(9)]
    reasons = {item["file"]: item["reason"] for item in with_masks["rejected"]}
    assert reasons["labels.csv line 11 (img_09.png)"] == f"no ROI mask named img_09.* in {masks}"

    boxed = build_table_datalist(
        tmp_path / "images", table, tmp_path / "b.json", targets=["angle"], box_columns=["x", "y", "w", "h"]
    )
    for entry in boxed["training"] + boxed["validation"]:
        number = int(entry["image"].split("_")[1][:2])
        assert entry["crop"] == [number, number + 1, 20, 10]
