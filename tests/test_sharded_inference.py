"""Every bundle's inference under ``torchrun`` (two CPU processes, gloo) writes the tables one process writes.

Each rank takes a contiguous share of the cases and writes its part; rank 0 joins the parts. A bad input
skipped by one rank is in ``problems.csv`` once, and no row is lost or doubled.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from bundle_runs import bundle_run, torchrun
from sonomuscle.cli import main
from sonomuscle.data.phantoms import write_phantom_dataset
from sonomuscle.workflows import bundle_command

REPO = Path(__file__).resolve().parents[1]
# bundle: (phantom task, the results table its inference writes, a bad input of its kind)
BUNDLES = {
    "muscle_architecture_2d": ("architecture2d", "measurements.csv", "broken.png"),
    "muscle_csa_2d": ("csa2d", "measurements.csv", "broken.png"),
    "muscle_classification_2d": ("classify2d", "predictions.csv", "broken.png"),
    "muscle_state_regression_2d": ("regress2d", "predictions.csv", "broken.png"),
    "ciliary_muscle_3d": ("ciliary3d", "measurements.csv", "broken.nii.gz"),
    "bladder_wall_3d": ("bladder3d", "measurements.csv", "broken.nii.gz"),
}
CASES = 3  # with the bad input, two per rank


def _inputs(bundle: str, tmp_path: Path) -> Path:
    """A folder of ``CASES`` phantom images of the bundle's kind and one file that cannot be read."""
    task, _, bad = BUNDLES[bundle]
    # image-level phantoms split by subject and need three of them
    count = 11 if bundle in ("muscle_classification_2d", "muscle_state_regression_2d") else 4
    datalist = write_phantom_dataset(task, tmp_path / "phantoms", count, seed=5)
    splits = [part for part in json.loads(datalist.read_text()).values() if isinstance(part, list)]
    entries = [entry for split in splits for entry in split if isinstance(entry, dict) and "image" in entry]
    folder = tmp_path / "in"
    folder.mkdir()
    for entry in entries[:CASES]:
        image = datalist.parent / entry["image"]
        (folder / image.name).symlink_to(image)
    (folder / bad).write_bytes(b"not an image")  # sorts first: rank 0 skips it
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("bundle", sorted(BUNDLES))
def test_two_processes_write_the_tables_one_process_writes(bundle, tmp_path):
    inputs = _inputs(bundle, tmp_path)
    settings = {"input_dir": inputs, "datalist": "none", "save_overlay": False}
    settings = {
        k: v for k, v in settings.items() if k != "save_overlay" or bundle == "muscle_architecture_2d"
    }
    bundle_run(bundle, ["inference"], output_dir=tmp_path / "one", **settings)
    command = bundle_command(
        bundle, ["inference", "multi_gpu_inference"], output_dir=tmp_path / "two", **settings
    )
    code, out = torchrun(command, tmp_path / "logs")
    logs = "".join(f.read_text() for f in sorted((tmp_path / "logs").glob("*/attempt_*/*/*.log")))
    assert code == 0, (out + logs)[-4000:]

    table = BUNDLES[bundle][1]
    one, two = (pd.read_csv(tmp_path / run / table) for run in ("one", "two"))
    assert len(one) >= CASES and len(set(one.iloc[:, 0])) == CASES  # every good case, once
    pd.testing.assert_frame_equal(two, one, check_exact=False, rtol=1e-3)
    problems = [pd.read_csv(tmp_path / run / "problems.csv") for run in ("one", "two")]
    assert len(problems[0]) == 1 and "broken" in problems[0]["input"][0]
    pd.testing.assert_frame_equal(problems[1], problems[0])
    assert not list((tmp_path / "two").glob(".*rank*"))  # the parts are gone once joined


@pytest.mark.slow
def test_measure_in_two_processes_gives_the_table_of_one(tmp_path, capsys):
    inputs = _inputs("muscle_architecture_2d", tmp_path)
    tables = []
    for processes in (1, 2):
        out = tmp_path / f"p{processes}"
        code = main(
            ["measure", str(inputs), "--out", str(out), "--processes", str(processes), "--no-overlay"]
        )
        assert code == 0
        tables.append(pd.read_csv(out / "measurements.csv"))
        skipped = [line for line in capsys.readouterr().err.splitlines() if "skipped" in line]
        assert any("broken.png" in line for line in skipped)
    assert len(tables[0]) == CASES
    pd.testing.assert_frame_equal(tables[1], tables[0], check_exact=False, rtol=1e-3)


def _tables(folder: Path) -> dict[str, pd.DataFrame]:
    """Every CSV and JSON a run wrote, by path within ``folder``, its own folder's name made neutral."""
    tables = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix not in (".csv", ".json") or path.name.startswith("."):
            continue
        text = path.read_text().replace(str(folder), "OUT")
        if path.suffix == ".csv":
            tables[str(path.relative_to(folder))] = pd.read_csv(io.StringIO(text))
        else:
            tables[str(path.relative_to(folder))] = pd.json_normalize(json.loads(text))
    return tables


@pytest.mark.slow
@pytest.mark.parametrize("bundle", sorted(BUNDLES))
def test_two_processes_evaluate_as_one_process_does(bundle, tmp_path):
    task = BUNDLES[bundle][0]
    image_level = bundle in ("muscle_classification_2d", "muscle_state_regression_2d")
    datalist = write_phantom_dataset(task, tmp_path / "phantoms", 11 if image_level else 5, seed=5)
    settings = {"datalist": datalist, "data_split": "test" if image_level else "training"}
    bundle_run(bundle, ["train", "evaluate"], output_dir=tmp_path / "one", **settings)
    configs = ["train", "evaluate", "multi_gpu_evaluate"]
    code, out = torchrun(
        bundle_command(bundle, configs, output_dir=tmp_path / "two", **settings), tmp_path / "logs"
    )
    logs = "".join(f.read_text() for f in sorted((tmp_path / "logs").glob("*/attempt_*/*/*.log")))
    assert code == 0, (out + logs)[-4000:]

    one, two = _tables(tmp_path / "one"), _tables(tmp_path / "two")
    assert set(two) == set(one) and one
    for name, table in one.items():
        pd.testing.assert_frame_equal(two[name], table, check_exact=False, rtol=1e-3, obj=name)
