"""The README's two commands are the ones CI runs."""

from __future__ import annotations

import re

from conftest import REPO_ROOT


def _readme_commands() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", quick_start, flags=re.S)


def test_readme_starts_with_setup_and_test_commands():
    setup, test = _readme_commands()[:2]
    assert "pip install torch==2.13.0" in setup and setup.endswith("sonomuscle demo")
    assert "pytest" in test


def test_ci_runs_the_readme_setup_and_test_command():
    setup, test = _readme_commands()[:2]
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    install = setup.split(" && ")[1]
    assert any(line.replace("--quiet ", "") == install for line in ci), install
    assert test in ci
