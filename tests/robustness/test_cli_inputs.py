"""``sonomuscle datalist|synth|evaluate|demo`` under bad input: exit status 2 and one line naming the
file or option, or, for a batch, every good case kept and each bad one listed with its reason."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bad_inputs import assert_one_line, image, mask, nifti, png

from sonomuscle.cli import main
from sonomuscle.evaluation.batch import ALL_MEASURES, _columns

GOOD = {"good0", "good1", "good2"}


@pytest.fixture
def pairs(tmp_path) -> dict[str, Path]:
    """Three good image/mask pairs in images/ and masks/."""
    for i in range(3):
        png(tmp_path / "images" / f"good{i}.png", image(seed=i))
        png(tmp_path / "masks" / f"good{i}.png", mask())
    return {"images": tmp_path / "images", "masks": tmp_path / "masks"}


def _datalist(pairs, tmp_path, *extra) -> list[str]:
    return ["datalist", "--images", str(pairs["images"]), "--labels", f"aponeurosis={pairs['masks']}",
            "--out", str(tmp_path / "d.json"), *extra]  # fmt: skip


def _kept(tmp_path) -> set[str]:
    datalist = json.loads((tmp_path / "d.json").read_text())
    entries = [e for split in ("training", "validation", "test") for e in datalist[split]]
    return {os.path.basename(e["image"]).split(".")[0] for e in entries}


def _tiff_with_nan(path):
    from tifffile import imwrite

    values = image().astype(np.float32)
    values[3, 3] = np.nan
    imwrite(path.with_suffix(".tif"), values)


@pytest.mark.parametrize(
    "name, write, reason",
    [
        ("garbage", lambda p: p.write_bytes(b"not an image at all"), ""),
        ("empty", lambda p: p.write_bytes(b""), ""),
        ("tiny", lambda p: png(p, image((1, 1))), "too small"),
        ("nan", _tiff_with_nan, "NaN"),
    ],
)
def test_datalist_rejects_a_bad_image_and_keeps_the_good_ones(pairs, tmp_path, capsys, name, write, reason):
    write(pairs["images"] / f"{name}.png")
    png(pairs["masks"] / f"{name}.png", mask())
    assert main(_datalist(pairs, tmp_path)) == 0
    assert _kept(tmp_path) == GOOD
    said = [
        line for line in capsys.readouterr().err.splitlines() if line.startswith(f"rejected images/{name}")
    ]
    assert len(said) == 1 and reason in said[0]


@pytest.mark.parametrize(
    "problem, write, reason",
    [
        ("values", lambda p: png(p, np.full((48, 40), 7)), "mask values"),
        ("size", lambda p: png(p, mask((30, 30))), "differs from its image"),
    ],
)
def test_datalist_rejects_a_bad_mask_and_keeps_the_good_ones(pairs, tmp_path, capsys, problem, write, reason):
    png(pairs["images"] / f"bad_{problem}.png", image())
    write(pairs["masks"] / f"bad_{problem}.png")
    assert main(_datalist(pairs, tmp_path)) == 0
    assert _kept(tmp_path) == GOOD
    assert reason in capsys.readouterr().err


def test_datalist_rejects_an_image_without_a_mask(pairs, tmp_path, capsys):
    png(pairs["images"] / "alone.png", image())
    assert main(_datalist(pairs, tmp_path)) == 0
    assert _kept(tmp_path) == GOOD and "no label file" in capsys.readouterr().err


def test_datalist_rejects_a_volume_with_zero_voxel_size(tmp_path, capsys):
    for i in range(3):
        nifti(tmp_path / "im" / f"v{i}.nii.gz", np.ones((20, 20, 20)))
        nifti(tmp_path / "lab" / f"v{i}.nii.gz", np.zeros((20, 20, 20)))
    nifti(tmp_path / "im" / "flat.nii.gz", np.ones((20, 20, 20)), zooms=(1.0, 1.0, 0.0))
    nifti(tmp_path / "lab" / "flat.nii.gz", np.zeros((20, 20, 20)), zooms=(1.0, 1.0, 0.0))
    argv = ["datalist", "--images", str(tmp_path / "im"), "--labels", str(tmp_path / "lab"),
            "--out", str(tmp_path / "d.json")]  # fmt: skip
    assert main(argv) == 0
    assert "voxel size" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--val-fraction", "1.5"], "fraction"),
        (["--group-by", "(unclosed"], "group-by"),
        (["--spacing", "-1"], "spacing"),
        (["--folds", "1"], "folds"),
    ],
)
def test_datalist_refuses_meaningless_options(pairs, tmp_path, capsys, extra, named):
    assert main(_datalist(pairs, tmp_path, *extra)) == 2
    assert_one_line(capsys.readouterr().err, named)


def test_datalist_missing_folders_and_unwritable_outputs(pairs, tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert (
        main(["datalist", "--images", str(missing), "--labels", str(pairs["masks"]), "--out", "d.json"]) == 2
    )
    assert_one_line(capsys.readouterr().err, missing)
    (tmp_path / "file").write_text("")
    assert main([*_datalist(pairs, tmp_path)[:-2], "--out", str(tmp_path / "file" / "d.json")]) == 2
    assert_one_line(capsys.readouterr().err, tmp_path / "file")
    long_name = tmp_path / ("x" * 300 + ".json")
    assert main([*_datalist(pairs, tmp_path)[:-2], "--out", str(long_name)]) == 2
    assert_one_line(capsys.readouterr().err, "name too long")


def test_datalist_of_a_folder_without_images(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "masks").mkdir()
    argv = [
        "datalist",
        "--images",
        str(tmp_path / "empty"),
        "--labels",
        str(tmp_path / "masks"),
        "--out",
        "d.json",
    ]
    assert main(argv) == 2
    assert_one_line(capsys.readouterr().err, tmp_path / "empty")


def test_synth_into_a_file_and_with_nothing_to_make(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["synth", "--task", "architecture2d", "--out", str(tmp_path / "file"), "--n", "2"]) == 2
    assert_one_line(capsys.readouterr().err, tmp_path / "file")
    with pytest.raises(SystemExit) as exit_:
        main(["synth", "--task", "architecture2d", "--out", str(tmp_path / "o"), "--n", "0"])
    assert exit_.value.code == 2 and "--n" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["demo", "--epochs", "0"], ["demo", "--n", "-1"], ["measure", "x.png", "--out", "o", "--step", "0"]],
)
def test_counts_below_one_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and "≥ 1" in capsys.readouterr().err


# sonomuscle evaluate


@pytest.fixture
def scored(tmp_path) -> dict:
    """Predictions and references of three good cases (names ``good<i>``)."""
    for i in range(3):
        png(tmp_path / "pred" / f"good{i}.png", mask())
        png(tmp_path / "ref" / f"good{i}.png", mask())
    return {"pred": tmp_path / "pred", "ref": tmp_path / "ref", "out": tmp_path / "out"}


def _evaluate(scored, *extra) -> list[str]:
    return [
        "evaluate",
        "--pred",
        str(scored["pred"]),
        "--ref",
        str(scored["ref"]),
        "--out",
        str(scored["out"]),
        *extra,
    ]


def _cases(scored) -> pd.DataFrame:
    return pd.read_csv(scored["out"] / "cases.csv").set_index("case")


@pytest.mark.parametrize(
    "problem, write_pred, reason",
    [
        ("shape", lambda p: png(p, mask((30, 30))), "shape mismatch"),
        ("garbage", lambda p: p.write_bytes(b"\x89PNG broken"), ""),
        ("values", lambda p: png(p, np.full((48, 40), 3)), ""),
    ],
)
def test_evaluate_keeps_every_good_case_past_a_bad_one(scored, capsys, problem, write_pred, reason):
    write_pred(scored["pred"] / f"bad_{problem}.png")
    png(scored["ref"] / f"bad_{problem}.png", mask())
    assert main(_evaluate(scored)) == 0
    cases = _cases(scored)
    assert (cases.loc[sorted(GOOD), "dice"] == 1.0).all()
    bad = cases.loc[f"bad_{problem}"]
    assert bad["status"] in ("skipped", "flagged") and reason in str(bad["problem"]) + str(bad["warnings"])


def test_evaluate_declared_class_absent_from_both_is_not_a_perfect_score(scored, capsys):
    png(scored["pred"] / "other.png", np.full((48, 40), 2))
    png(scored["ref"] / "other.png", np.full((48, 40), 2))
    assert main(_evaluate(scored, "--classes", "muscle=1")) == 0
    other = _cases(scored).loc["other"]
    assert other["status"] == "flagged" and np.isnan(other["dice"])
    assert "not among the classes" in other["warnings"]


def test_evaluate_resumes_past_a_damaged_partial_table(scored, capsys):
    scored["out"].mkdir()
    main(_evaluate(scored))
    header = ",".join(_columns(ALL_MEASURES))  # what an interrupted run of these measures leaves
    (scored["out"] / "cases.partial.csv").write_text(
        header + "\n" + "good0,label_1,ok,,,,2,px,a,b,nan?,x,y\n"
    )
    assert main(_evaluate(scored)) == 0
    assert set(_cases(scored).index) == GOOD and "damaged" in capsys.readouterr().err


def test_evaluate_file_names_that_are_not_utf8(scored):
    name = b"caf\xe9.png"  # Latin-1, not UTF-8
    for side in ("pred", "ref"):
        with open(os.fsencode(scored[side]) + b"/" + name, "wb") as file:
            file.write((scored[side] / "good0.png").read_bytes())
    assert main(_evaluate(scored)) == 0
    assert len(_cases(scored)) == 4


def test_evaluate_refuses_a_spacing_that_is_not_positive(scored, capsys):
    assert main(_evaluate(scored, "--spacing", "0")) == 2
    assert_one_line(capsys.readouterr().err, "--spacing")


@pytest.mark.parametrize("extra", [["--workers", "0"], ["--measures", "dice,area"], ["--classes", "wall"]])
def test_evaluate_usage_errors(scored, capsys, extra):
    with pytest.raises(SystemExit) as exit_:
        main(_evaluate(scored, *extra))
    assert exit_.value.code == 2 and extra[0] in capsys.readouterr().err


def test_evaluate_unusable_folders_and_files(scored, tmp_path, capsys):
    assert main([*_evaluate(scored)[:2], str(tmp_path / "none"), *_evaluate(scored)[3:]]) == 2
    assert_one_line(capsys.readouterr().err, tmp_path / "none")
    (tmp_path / "file").write_text("")
    assert main([*_evaluate(scored)[:-2], "--out", str(tmp_path / "file")]) == 2
    assert_one_line(capsys.readouterr().err, tmp_path / "file")
    (scored["pred"] / "classes.json").write_text("{not json")
    assert main(_evaluate(scored)) == 2
    assert_one_line(capsys.readouterr().err, "classes.json")
