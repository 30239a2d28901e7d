"""The results writer: rows appended as they come, a new column once, nothing finished lost on a crash."""

from __future__ import annotations

import csv

import pytest
from ignite.engine import Engine

from sonomuscle.handlers.results import ResultsHandler
from sonomuscle.results import ResultsTable


def _read(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as table:
        return list(csv.DictReader(table))


def test_batches_are_appended_without_rewriting_what_was_written(tmp_path):
    table = ResultsTable(tmp_path / "m.csv")
    table.start()
    table.add([{"image": "a.png", "thickness": 1 / 3}, {"image": "b.png", "thickness": 2.0}])
    first, inode = table.path.read_bytes(), table.path.stat().st_ino
    table.add([{"image": "c.png", "thickness": 3.25}])
    # the same file grown, not a new one written in its place: the earlier rows are not written again
    assert table.path.stat().st_ino == inode and table.path.read_bytes().startswith(first)
    assert _read(table.path) == [
        {"image": "a.png", "thickness": "0.333333"},  # six significant digits, as every table
        {"image": "b.png", "thickness": "2"},
        {"image": "c.png", "thickness": "3.25"},
    ]
    assert table.count == 3


def test_a_new_column_widens_the_table_and_leaves_earlier_rows_empty_there(tmp_path):
    table = ResultsTable(tmp_path / "m.csv")
    table.add([{"image": "a.png", "thickness": 1.5}])
    table.add([{"image": "bad.png", "error": "unreadable"}, {"image": "c.png", "thickness": 2.5}])
    table.add([{"image": "d.png", "thickness": 3.5, "error": ""}])
    rows = _read(table.path)
    assert list(rows[0]) == ["image", "thickness", "error"]
    assert [(r["image"], r["thickness"], r["error"]) for r in rows] == [
        ("a.png", "1.5", ""),
        ("bad.png", "", "unreadable"),
        ("c.png", "2.5", ""),
        ("d.png", "3.5", ""),
    ]


def test_starting_again_forgets_the_previous_run(tmp_path):
    table = ResultsTable(tmp_path / "m.csv")
    table.add([{"image": "old.png", "old_measure": 1.0}])
    table.start()
    assert not table.path.exists() and table.count == 0
    table.add([{"image": "new.png", "thickness": 2.0}])
    assert _read(table.path) == [{"image": "new.png", "thickness": "2"}]


class _Doubles(ResultsHandler):
    """One row per item of the batch: the item and its double."""

    def rows(self, engine: Engine) -> list[dict]:
        return [{"item": x, "double": 2 * x} for x in engine.state.output]


def test_an_interrupted_run_keeps_every_finished_row(tmp_path):
    def step(engine, batch):
        if batch[0] >= 6:
            raise RuntimeError("the machine went away")
        return batch

    engine = Engine(step)
    handler = _Doubles(tmp_path, "rows.csv")
    handler.attach(engine)
    with pytest.raises(RuntimeError, match="went away"):
        engine.run([[0, 1], [2, 3], [4, 5], [6, 7]], max_epochs=1)
    assert [int(r["double"]) for r in _read(tmp_path / "rows.csv")] == [0, 2, 4, 6, 8, 10]
