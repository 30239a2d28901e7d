"""The package carries its bundles: what a bundle ships, ``bundle list|export``, and the built wheel for real.

The wheel is built the way an index user gets it (sdist → wheel), installed into a fresh virtual environment
outside the repository, and an exported bundle then runs with ``python -m monai.bundle run`` on phantoms.
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import sonomuscle
from sonomuscle.bundles_export import export_bundle, shipped_files
from sonomuscle.cli import main
from sonomuscle.workflows import bundle_dir, bundle_names

REPO = Path(__file__).resolve().parents[1]
BUNDLES = sorted(p.parent.parent for p in (REPO / "bundles").glob("*/configs/metadata.json"))
RUN_BUNDLE = "ciliary_muscle_3d"  # the one the installed wheel runs (small volumes, quick on CPU)
RUN_PHANTOMS = "ciliary3d"
WHERE = "import sonomuscle, sonomuscle.workflows as w; print(sonomuscle.__file__, w.bundle_dir({bundle!r}))"
BUILD_SDIST = "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])"


def _fake_bundle(root: Path) -> Path:
    """A bundle folder with everything a run leaves beside the shipped files."""
    files = {
        "configs/metadata.json": json.dumps({"version": "9.9.9", "task": "a fake task"}),
        "configs/inference.json": "{}",
        "configs/__pycache__/x.cpython-311.pyc": "",
        "docs/README.md": "fake",
        "LICENSE": "fake",
        "models/model.pt": "weights",
        "models/model.ts": "scripted",
        "models/pretrained_encoder.pt": "encoder",
        "models/checkpoint_epoch=3.pt": "run output",
        "runs/train/events": "run output",
        "eval/measurements.csv": "run output",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_shipped_files_leave_run_outputs_behind(tmp_path):
    bundle = _fake_bundle(tmp_path / "fake_bundle")
    assert {p.as_posix() for p in shipped_files(bundle)} == {
        "configs/metadata.json",
        "configs/inference.json",
        "docs/README.md",
        "LICENSE",
        "models/model.pt",
        "models/model.ts",
        "models/pretrained_encoder.pt",
    }


def test_export_writes_the_shipped_files_and_refuses_a_non_empty_folder(tmp_path):
    bundle = _fake_bundle(tmp_path / "fake_bundle")
    (tmp_path / "empty").mkdir()
    for dest in (tmp_path / "new" / "b", tmp_path / "empty"):
        export_bundle(bundle, dest)
        written = sorted(p.relative_to(dest) for p in dest.rglob("*") if p.is_file())
        assert written == sorted(shipped_files(bundle))
    with pytest.raises(FileExistsError, match="not an empty folder"):
        export_bundle(bundle, tmp_path / "empty")
    assert not list(tmp_path.glob("**/.tmp-*")), "a temporary folder was left behind"


def test_bundle_export_command_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert main(["bundle", "export", "no_such_bundle", str(tmp_path / "b")]) == 2
    unknown = capsys.readouterr().err
    assert unknown.count("\n") == 1 and all(b.name in unknown for b in BUNDLES)
    assert main(["bundle", "export", BUNDLES[0].name, str(tmp_path / "full")]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_bundle_list_names_version_weights_and_task(capsys):
    assert main(["bundle", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(BUNDLES)
    for line, bundle in zip(lines, BUNDLES, strict=True):
        meta = json.loads((bundle / "configs" / "metadata.json").read_text())
        assert line.split()[:2] == [bundle.name, meta["version"]] and meta["task"] in line
        assert ("model.pt" in line) == (bundle / "models" / "model.pt").is_file()


def test_sonomuscle_bundles_adds_a_folder_without_shadowing_shipped_bundles(tmp_path, monkeypatch):
    _fake_bundle(tmp_path / "fake_bundle")
    _fake_bundle(tmp_path / BUNDLES[0].name)
    monkeypatch.setenv("SONOMUSCLE_BUNDLES", str(tmp_path))
    assert "fake_bundle" in bundle_names()
    assert bundle_dir("fake_bundle") == tmp_path / "fake_bundle"
    assert bundle_dir(BUNDLES[0].name) != tmp_path / BUNDLES[0].name


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda b: b.name)
def test_metadata_requires_this_sonomuscle_version(bundle):
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["required_packages_version"]["sonomuscle"] == sonomuscle.__version__
    assert importlib.metadata.version("sonomuscle") == sonomuscle.__version__


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """sdist from the repository, then the wheel from that sdist (the way an index user gets it)."""
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-c", BUILD_SDIST, str(dist)], cwd=REPO)
    (sdist,) = dist.glob("sonomuscle-*.tar.gz")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    _run([*pip_wheel, "-w", str(dist), str(sdist)], cwd=dist)
    (built,) = dist.glob("sonomuscle-*.whl")
    return built


def test_wheel_carries_each_bundles_shipped_files(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for bundle in BUNDLES:
        packaged = {f"sonomuscle/bundles/{bundle.name}/{rel.as_posix()}" for rel in shipped_files(bundle)}
        assert f"sonomuscle/bundles/{bundle.name}/configs/metadata.json" in packaged
        assert packaged <= names, sorted(packaged - names)
    assert not [n for n in names if "/runs/" in n or "/eval/" in n or "__pycache__/" in n]


def test_installed_wheel_runs_an_exported_bundle_outside_the_repository(wheel, tmp_path):
    weights = REPO / "bundles" / RUN_BUNDLE / "models" / "model.pt"
    if not weights.is_file():
        pytest.skip(f"{weights} is absent: the wheel has no weights to run {RUN_BUNDLE} with")
    venv = _venv_with_current_dependencies(tmp_path / "venv")
    python, sonomuscle_cmd = str(venv / "bin" / "python"), str(venv / "bin" / "sonomuscle")
    _run([python, "-m", "pip", "install", "--no-deps", "-q", str(wheel)], cwd=tmp_path)

    found = _run([python, "-c", WHERE.format(bundle=RUN_BUNDLE)], tmp_path).stdout.split()
    for path in map(Path, found):  # the package and the bundle both come from the wheel
        assert path.is_relative_to(venv.resolve()) and not path.is_relative_to(REPO), path
    assert RUN_BUNDLE in _run([sonomuscle_cmd, "bundle", "list"], tmp_path).stdout
    _run([sonomuscle_cmd, "bundle", "export", RUN_BUNDLE, "b"], tmp_path)
    _run([sonomuscle_cmd, "synth", "--task", RUN_PHANTOMS, "--out", "ph", "--n", "2"], tmp_path)
    bundle_run = [python, "-m", "monai.bundle", "run", "--config_file", "b/configs/inference.json"]
    _run([*bundle_run, "--bundle_root", "b", "--input_dir", "ph/images", "--output_dir", "out"], tmp_path)

    assert sorted(p.name for p in (tmp_path / "out" / "pred").iterdir()) == [
        "case_000.nii.gz",
        "case_001.nii.gz",
        "classes.json",
    ]
    with open(tmp_path / "out" / "measurements.csv") as table:
        assert [row["case"] for row in csv.DictReader(table)] == ["case_000", "case_001"]


def _venv_with_current_dependencies(path: Path) -> Path:
    """A fresh venv that sees this environment's packages (a .pth line) but none of its .pth hooks.

    The editable install's own .pth is not processed through a path line, so ``sonomuscle`` can only come
    from what gets installed into the new venv.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    purelib = _run(
        [str(path / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], path
    ).stdout.strip()
    Path(purelib, "current_env.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return path


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run outside any hint of the repository: no SONOMUSCLE_BUNDLES, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("SONOMUSCLE_BUNDLES", "PYTHONPATH")}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done
