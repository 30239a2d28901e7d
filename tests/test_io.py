"""Atomic writes: the target appears whole or not at all, and failures leave no temporary files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sonomuscle.io import atomic_write_json, atomic_write_rows, atomic_write_text, atomic_write_with


def test_json_holds_numpy_values(tmp_path):
    target = atomic_write_json(tmp_path / "sub" / "a.json", {"x": np.float32(1.5), "v": np.arange(3)})
    assert json.loads(target.read_text()) == {"x": 1.5, "v": [0, 1, 2]}


def test_failed_write_keeps_old_file_and_leaves_no_temporaries(tmp_path):
    target = atomic_write_text(tmp_path / "a.csv", "old\n")

    def explode(path):
        path.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write_with(target, explode)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]


def test_temporary_name_keeps_double_extension(tmp_path):
    seen = []
    atomic_write_with(tmp_path / "case.nii.gz", lambda p: (seen.append(p.name), p.write_bytes(b"x")))
    assert seen[0].endswith("case.nii.gz")
    assert (tmp_path / "case.nii.gz").read_bytes() == b"x"


def test_published_file_is_readable_by_others(tmp_path):
    target = atomic_write_text(tmp_path / "a.txt", "x")
    assert target.stat().st_mode & 0o044 == 0o044


def test_rows_table_takes_every_column_in_first_seen_order(tmp_path):
    target = atomic_write_rows(
        tmp_path / "rows.csv", [{"case": "a", "dice": 0.5}, {"case": "b", "error": "bad"}]
    )
    assert target.read_text().splitlines() == ["case,dice,error", "a,0.5,", "b,,bad"]


def test_csv_rows_keep_six_significant_digits(tmp_path):
    path = atomic_write_rows(tmp_path / "t.csv", [{"image": "a.png", "thickness": 12.345678912345, "n": 3}])
    assert path.read_text() == "image,thickness,n\na.png,12.3457,3\n"
