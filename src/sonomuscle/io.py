"""Atomic file output: a reader never sees a half-written CSV, JSON or image."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` in one step."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # the real name ends the temporary one, so writers that pick a format by extension (.nii.gz) still do
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=f"-{target.name}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; published files get the usual mode
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_text(target: str | os.PathLike, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8", errors="backslashreplace")  # undecodable file names
    return Path(target)


def atomic_write_json(target: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(target, json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json(path: str | os.PathLike, missing: str = "not found") -> dict:
    """A JSON object from a file the user named; missing, unparsable or not an object is one line."""
    from sonomuscle.errors import InputError

    path = Path(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise InputError(path, missing) from None
    except ValueError as err:
        raise InputError(path, f"is not JSON ({err})") from None
    if not isinstance(content, dict):
        raise InputError(path, f"holds a JSON {type(content).__name__}, not an object")
    return content


def atomic_write_rows(
    target: str | os.PathLike, rows: Sequence[Mapping[str, Any]], significant: int | None = 6
) -> Path:
    """A CSV table of ``rows`` (columns in order of first appearance; a missing value is left empty).

    Floats keep ``significant`` digits: measurements are not known to 15, and people read these tables.
    ``None`` keeps every digit (exact phantom truth).
    """
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: rounded(v, significant) for k, v in row.items()} for row in rows)
    return atomic_write_text(target, buffer.getvalue())


def rounded(value: Any, significant: int | None) -> Any:
    """A float as ``significant`` digits of text (None: as it is); anything else as it is."""
    return f"{value:.{significant}g}" if significant and isinstance(value, float) else value


def atomic_write_with(target: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp_path)`` (e.g. ``df.to_csv``, ``fig.savefig``, ``nib.save``) and publish atomically."""
    with atomic_path(target) as tmp:
        write(tmp)
    return Path(target)


def read_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a CSV this project wrote, as text (what :func:`atomic_write_rows` takes back)."""
    with open(path, encoding="utf-8", newline="") as table:
        return list(csv.DictReader(table))


def _json_default(obj: Any) -> Any:
    """Numpy scalars and arrays, paths: what measurement dicts usually hold."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
