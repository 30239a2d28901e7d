"""The one writer of results tables: rows appended as they come, each batch flushed to disk.

A run over a cohort or a long recording must not rewrite its whole table after every batch (the cost grows
with the rows done) and must not lose finished rows when it is interrupted. :class:`ResultsTable` appends
each batch's rows to its CSV in one write and flushes it to disk; a reader sees every finished row. Only a
batch that brings a column no earlier row had (e.g. the first ``error``) rewrites the table, once and
atomically, with that column added and left empty in the earlier rows. Floats keep six significant digits,
as in every table this project writes (:func:`sonomuscle.io.atomic_write_rows`).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sonomuscle.io import atomic_write_rows, read_rows, rounded


class ResultsTable:
    """A CSV at ``path`` that grows by :meth:`add`; :meth:`start` begins it afresh for a new run."""

    def __init__(self, path: str | os.PathLike, significant: int | None = 6) -> None:
        self.path = Path(path)
        self.significant = significant
        self.columns: list[str] = []
        self.count = 0

    def start(self) -> None:
        """Forget the rows of a previous run, in memory and on disk: they must not pass for this run's."""
        self.path.unlink(missing_ok=True)
        self.columns = []
        self.count = 0

    def add(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append ``rows`` (columns in order of first appearance; a missing value is left empty)."""
        if not rows:
            return
        new = [key for key in dict.fromkeys(k for row in rows for k in row) if key not in self.columns]
        if new or not self.path.is_file():
            self._rewrite(rows, new)
        else:
            self._append(rows)
        self.count += len(rows)

    def _append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        buffer = io.StringIO()
        self._writer(buffer).writerows(self._formatted(row) for row in rows)
        with open(self.path, "a", encoding="utf-8", newline="") as table:
            table.write(buffer.getvalue())  # one write per batch
            table.flush()
            os.fsync(table.fileno())

    def _rewrite(self, rows: Sequence[Mapping[str, Any]], new: list[str]) -> None:
        """The table so far and ``rows`` under the widened header, atomically."""
        earlier = read_rows(self.path) if self.count and self.path.is_file() else []
        self.columns += new
        header = dict.fromkeys(self.columns, "")
        atomic_write_rows(self.path, [header | row for row in earlier + [self._formatted(r) for r in rows]])

    def _writer(self, buffer: io.StringIO) -> csv.DictWriter:
        return csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n", restval="")

    def _formatted(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {key: rounded(value, self.significant) for key, value in row.items()}
