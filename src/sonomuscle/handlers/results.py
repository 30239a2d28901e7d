"""The base of the handlers that turn an engine's outputs into a results table, one row per case or structure.

Each subclass says only how one iteration's output becomes rows (:meth:`ResultsHandler.rows`) and what to
say at the end (:meth:`ResultsHandler.report`); the table is begun when the run starts and every row is
appended as it comes (:class:`sonomuscle.results.ResultsTable`), so an interrupted run keeps each
finished row and a long one never rewrites what it has written. Under ``torchrun`` each rank writes its
part and rank 0 joins them into the one table (:mod:`sonomuscle.distributed`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ignite.engine import Engine, Events

from sonomuscle.distributed import join_rank_parts, rank_and_world, rank_part
from sonomuscle.results import ResultsTable

logger = logging.getLogger(__name__)


class ResultsHandler:
    """Ignite handler writing ``output_dir/filename``: :meth:`rows` of every iteration, appended."""

    def __init__(self, output_dir: str | os.PathLike, filename: str) -> None:
        self.path = Path(output_dir) / filename
        self.table = ResultsTable(self.path)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, lambda _: self.completed())

    def started(self, engine: Engine) -> None:
        rank, world = rank_and_world()
        self.path.unlink(missing_ok=True)  # a previous run's rows must not pass for this run's
        self.table = ResultsTable(self.path if world == 1 else rank_part(self.path, rank))
        self.table.start()

    def __call__(self, engine: Engine) -> None:
        self.table.add(self.rows(engine))

    def rows(self, engine: Engine) -> list[dict]:
        """The rows of the iteration that just completed."""
        raise NotImplementedError

    def completed(self) -> None:
        """The run is over: say what it wrote; under several processes, join their parts."""
        self.report()
        join_rank_parts(self.path)

    def report(self) -> None:
        """What the run wrote, in a log line or two."""
        logger.info(f"{self.table.count} row(s) → {self.path}")  # this rank's, under several
