"""One error type for bad user input, so every message reads ``<file>: <problem>`` on one line."""

from __future__ import annotations

from os import PathLike


class InputError(ValueError):
    """A user's file or argument cannot be used; the message names the file and the problem."""

    def __init__(self, source: str | PathLike | None, problem: str) -> None:
        self.source = None if source is None else str(source)
        self.problem = problem
        super().__init__(problem if source is None else f"{source}: {problem}")
