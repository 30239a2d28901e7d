"""Argument parsing of the ``sonomuscle`` command (each sub-command's work is tested with its module)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sonomuscle.cli import build_parser


def test_datalist_labels_take_optional_keys():
    args = build_parser().parse_args(
        ["datalist", "--images", "im", "--labels", "m", "--labels", "fascicle=f", "--out", "d.json"]
    )
    assert dict(args.labels) == {"label": Path("m"), "fascicle": Path("f")}


def test_evaluate_parses_classes_and_measures():
    args = build_parser().parse_args(
        [
            "evaluate",
            "--pred",
            "p",
            "--ref",
            "r",
            "--out",
            "o",
            "--classes",
            "wall=1",
            "--classes",
            "lumen=2,muscle=3",
            "--measures",
            "dice,volume",
        ]
    )
    assert args.classes == [{"wall": 1}, {"lumen": 2, "muscle": 3}]
    assert args.measures == ["dice", "volume"]


def test_bundle_export_takes_a_name_and_a_folder():
    args = build_parser().parse_args(["bundle", "export", "ciliary_muscle_3d", "out/b"])
    assert (args.command, args.bundle_command, args.name, args.dir) == (
        "bundle",
        "export",
        "ciliary_muscle_3d",
        Path("out/b"),
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["bundle"],
        ["bundle", "export", "ciliary_muscle_3d"],
        ["evaluate", "--pred", "p", "--ref", "r", "--out", "o", "--classes", "wall"],
        ["evaluate", "--pred", "p", "--ref", "r", "--out", "o", "--measures", "dice,volumes"],
        ["synth", "--task", "knee3d", "--out", "o"],
    ],
)
def test_bad_arguments_exit_with_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_version_and_defaults_in_help(capsys):
    from sonomuscle import __version__

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--version"])
    assert capsys.readouterr().out.strip() == f"sonomuscle {__version__}"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["datalist", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.2)" in help_text and "(default: None)" not in help_text


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--epochs", "0"],
        ["demo", "--n", "-3"],
        ["synth", "--task", "architecture2d", "--out", "o", "--n", "0"],
    ],
)
def test_counts_must_be_positive(argv, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    assert "expected a whole number ≥ 1" in capsys.readouterr().err
