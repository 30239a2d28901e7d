"""One error type for bad user input, so every message reads ``<file>: <problem>`` on one line.

Errors caused by the user's files, options or output folders reach the user as that one line, also when
they surface through MONAI's config wrappers ("Failed to evaluate ...") or a ``python -m monai.bundle
run`` traceback: :func:`user_error` finds the cause in the exception chain, and importing ``sonomuscle``
(which every bundle config does) installs an exception hook that prints it. ``SONOMUSCLE_DEBUG=1`` keeps
the full traceback.
"""

from __future__ import annotations

import errno
import math
import os
import sys
from os import PathLike
from types import TracebackType

# operating-system errors about a path the user gave: missing, not a folder, read-only, name too long, ...
USER_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENAMETOOLONG,
        errno.EEXIST,
        errno.ENOTEMPTY,
        errno.ENOSPC,
    }
)


class InputError(ValueError):
    """A user's file or argument cannot be used; the message names the file and the problem."""

    def __init__(self, source: str | PathLike | None, problem: str) -> None:
        self.source = None if source is None else str(source)
        self.problem = problem
        super().__init__(problem if source is None else f"{source}: {problem}")


def positive_mm(option: str, value: object) -> float:
    """``value`` as a length in mm; one line naming ``option`` unless it is a finite positive number."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and value > 0)
    ):
        raise InputError(None, f"{option} must be a positive number of mm, got {value!r}")
    return float(value)


OFF_WORDS = frozenset({"false", "no", "off", "0", "none", ""})
ON_WORDS = frozenset({"true", "yes", "on", "1"})


def switched_off(value: object) -> bool:
    """Whether a setting says "off" as ``monai.bundle`` hands it over: ``--resume false`` arrives as the
    text ``"false"`` (only ``False`` is read as a Python literal), which would otherwise count as on."""
    return value is None or value is False or str(value).strip().lower() in OFF_WORDS


def switch(option: str, value: object) -> bool:
    """An on/off setting (``true``/``false``, ``yes``/``no``, …, or a bool), one line naming ``option`` otherwise."""
    if switched_off(value):
        return False
    if value is True or str(value).strip().lower() in ON_WORDS:
        return True
    raise InputError(None, f"{option} must be true or false, got {value!r}")


def _chain(err: BaseException | None) -> list[BaseException]:
    """``err`` and what caused it, through wrappers such as MONAI's "applying transform" errors."""
    chain: list[BaseException] = []
    while err is not None and err not in chain:
        chain.append(err)
        err = err.__cause__ or err.__context__
    return chain


def input_error_of(err: BaseException) -> InputError | None:
    """The :class:`InputError` anywhere in ``err``'s chain; None when there is none."""
    return next((cause for cause in _chain(err) if isinstance(cause, InputError)), None)


def user_error(err: BaseException) -> str | None:
    """The one line for an error the user can fix, from anywhere in ``err``'s chain; None for a bug.

    An :class:`InputError` wins over an operating-system error about a path (which it may have caused).
    """
    found = input_error_of(err)
    if found is not None:
        return str(found)
    for cause in _chain(err):
        if isinstance(cause, OSError) and cause.errno in USER_ERRNOS and cause.filename is not None:
            return f"{cause.filename}: {cause.strerror}"
    return None


def _one_line_hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    """Print the one line and leave at once (status 1). Tearing the interpreter down after an error raised
    in a worker thread (a ``CacheDataset`` filling its cache) can abort in native code ("terminate called
    without an active exception", status 134) and bury the line; nothing is left to clean up."""
    line = None if os.environ.get("SONOMUSCLE_DEBUG") else user_error(value)
    if line is None:
        sys.__excepthook__(kind, value, tb)
        return
    print(f"error: {line}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def install_one_line_errors() -> None:
    """Uncaught user errors print one line (exit status 1) instead of a traceback."""
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _one_line_hook
