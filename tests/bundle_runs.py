"""Run a bundle the way a user does (``python -m monai.bundle run`` in a child process) and keep its log."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from sonomuscle.workflows import bundle_command

REPO = Path(__file__).resolve().parents[1]


def bundle_run(
    bundle: str, configs: Sequence[str], *, check: bool = True, **overrides: object
) -> subprocess.CompletedProcess:
    """Run ``configs`` (names without ``.json``) of ``bundle``; with ``check`` a failure shows the log's tail."""
    command = bundle_command(bundle, list(configs), **overrides)
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done
