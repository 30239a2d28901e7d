"""``import sonomuscle`` changes nothing in the interpreter; a bundle run asks for its one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bundle_runs import bundle_run

PROBE = """
import sys, warnings
hook, filters = sys.excepthook, list(warnings.filters)
import sonomuscle, sonomuscle.measure, sonomuscle.cli, sonomuscle.evaluation.agreement
ours = [f for f in warnings.filters if f not in filters and f[1] is not None
        and any(f[1].pattern == notice for notice in sonomuscle.QUIET_NOTICES)]
print(sys.excepthook is hook, len(ours))
import sonomuscle.bundle_session
print(sys.excepthook is hook, len([f for f in warnings.filters if f[1] is not None
                                   and f[1].pattern in sonomuscle.QUIET_NOTICES]) > 0)
"""


def test_importing_the_library_leaves_the_interpreter_as_it_was():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "0", "False", "True"]


@pytest.mark.parametrize("bundle", ["muscle_architecture_2d", "ciliary_muscle_3d"])
def test_a_bundle_run_still_ends_a_user_error_in_one_line(tmp_path, bundle):
    done = bundle_run(bundle, ["train"], check=False, datalist=tmp_path / "missing.json", output_dir=tmp_path)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "missing.json" in lines[0] and "Traceback" not in done.stderr
