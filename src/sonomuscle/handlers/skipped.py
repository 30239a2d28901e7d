"""The inputs a run skipped, kept in its outputs: ``problems.csv`` beside ``measurements.csv``.

:class:`~sonomuscle.data.stream.InferenceStream` skips a file or frame it cannot use with one log line and
goes on; a log scrolls away, so this handler also writes each skipped input and its reason to
``output_dir/problems.csv``. It hears the stream through its logger, also in DataLoader worker processes
forked during the run (they inherit the handler): each reason is appended to a spool file beside the
table and the table is rewritten from it, so it is complete even when the run fails later. (Workers
started by ``spawn``, the default on macOS and Windows, only log the reasons.) Under ``torchrun`` each rank
keeps its own part and rank 0 joins them (:mod:`sonomuscle.distributed`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ignite.engine import Engine, Events

from sonomuscle.data import stream
from sonomuscle.distributed import join_rank_parts, rank_and_world, rank_part
from sonomuscle.errors import InputError
from sonomuscle.io import atomic_write_rows

logger = logging.getLogger(__name__)


class SkippedInputs(logging.Handler):
    """Collect the stream's "skipped" lines during an engine run; write them to ``output_dir/filename``."""

    def __init__(self, output_dir: str | os.PathLike, filename: str = "problems.csv") -> None:
        super().__init__(logging.WARNING)
        self.path = Path(output_dir) / filename
        self.part = self.path  # this rank's table: the table itself in a lone process

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def emit(self, record: logging.LogRecord) -> None:
        reason = record.args[0] if isinstance(record.args, tuple) and record.args else record.getMessage()
        if isinstance(reason, InputError):
            row = {"input": reason.source or "", "problem": reason.problem}
        else:
            row = {"input": "", "problem": str(reason)}
        with open(self.spool, "a", encoding="utf-8") as spool:  # one short line: appended whole
            spool.write(json.dumps(row) + "\n")
        atomic_write_rows(self.part, self._spooled())

    @property
    def spool(self) -> Path:
        """One JSON object per skipped input, appended by whichever process skipped it."""
        return self.part.with_name(f".{self.part.name}.lines")

    def _started(self, engine: Engine) -> None:
        rank, world = rank_and_world()
        self.part = self.path if world == 1 else rank_part(self.path, rank)
        self.path.unlink(missing_ok=True)  # a previous run's problems are not this run's
        self.part.unlink(missing_ok=True)
        self.spool.unlink(missing_ok=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        stream.logger.addHandler(self)

    def _completed(self, engine: Engine) -> None:
        stream.logger.removeHandler(self)
        if self.spool.is_file():  # written where the stream ran, maybe in a worker process
            skipped = len(self._spooled())
            logger.warning(f"{skipped} input(s) skipped, each with its reason in {self.path}")
        self.spool.unlink(missing_ok=True)
        join_rank_parts(self.path)

    def _spooled(self) -> list[dict]:
        """The skipped inputs of this run so far, from every process that skipped some."""
        return [json.loads(line) for line in self.spool.read_text(encoding="utf-8").splitlines()]
