"""Run a bundle the way a user does (``python -m monai.bundle run`` in a child process) and keep its log."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from sonomuscle.workflows import bundle_command, under_torchrun

REPO = Path(__file__).resolve().parents[1]
# only turns a deadlock (ranks waiting on each other for ever) into a failure; a run takes well under a
# minute alone and a few on a loaded machine, so load alone never reaches it
DEADLOCK_TIMEOUT_S = 3600


def bundle_run(
    bundle: str, configs: Sequence[str], *, check: bool = True, **overrides: object
) -> subprocess.CompletedProcess:
    """Run ``configs`` (names without ``.json``) of ``bundle``; with ``check`` a failure shows the log's tail."""
    command = bundle_command(bundle, list(configs), **overrides)
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def torchrun(command: Sequence[str], logs: Path, processes: int = 2) -> tuple[int, str]:
    """Run a ``bundle_command`` line in ``processes`` gloo ranks (torchrun's standalone launcher); the exit
    code and the launcher's output. Each rank's own log is under ``logs/*/attempt_*/<rank>/``."""
    process = subprocess.Popen(
        under_torchrun(command, processes, "--log-dir", str(logs), "--redirects", "3"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        start_new_session=True,
    )
    try:
        out, _ = process.communicate(timeout=DEADLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:  # a deadlock: stop the ranks too, not just the launcher
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
    return process.returncode, out
