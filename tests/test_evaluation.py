"""Batch evaluation of prediction folders: pairing, every bad-case kind, options, workers, report, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sonomuscle.cli import main
from sonomuscle.evaluation.batch import case_name, evaluate_folder

SPACING = (0.5, 0.4, 2.0)
VOXEL = float(np.prod(SPACING))


def _save_nifti(path: Path, labels: np.ndarray, spacing=SPACING) -> None:
    nib.save(nib.Nifti1Image(labels.astype(np.uint8), np.diag([*spacing, 1.0])), path)


def _volume(shift: int = 0) -> np.ndarray:
    """Label 1: a 10×6×4 slab; label 2: a 4×4×2 box; the prediction shifts label 1 along X."""
    labels = np.zeros((24, 16, 8), dtype=np.uint8)
    labels[4 + shift : 14 + shift, 2:8, 2:6] = 1
    labels[18:22, 10:14, 3:5] = 2
    return labels


@pytest.fixture(scope="module")
def folders_3d(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eval3d")
    pred, ref = root / "pred", root / "ref"
    pred.mkdir()
    ref.mkdir()
    for i, shift in enumerate((0, 1, 2, 3, 5)):  # good cases: Dice of label 1 = (10 - shift) / 10
        _save_nifti(ref / f"case{i}.nii.gz", _volume())
        _save_nifti(pred / f"case{i}_pred.nii.gz", _volume(shift))
    _save_nifti(pred / "orphan_pred.nii.gz", _volume())  # no reference
    _save_nifti(ref / "lonely.nii.gz", _volume())  # no prediction
    _save_nifti(ref / "shape.nii.gz", _volume())
    _save_nifti(pred / "shape.nii.gz", _volume()[:20])
    _save_nifti(ref / "spacing.nii.gz", _volume())
    _save_nifti(pred / "spacing.nii.gz", _volume(), spacing=(0.5, 0.4, 1.0))
    _save_nifti(ref / "empty.nii.gz", _volume())
    _save_nifti(pred / "empty.nii.gz", np.zeros_like(_volume()))
    _save_nifti(ref / "corrupt.nii.gz", _volume())
    (pred / "corrupt.nii.gz").write_bytes(b"not a nifti file at all")
    return pred, ref


@pytest.fixture(scope="module")
def evaluated_3d(folders_3d, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("out3d")
    return out, evaluate_folder(*folders_3d, out=out)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("c1.nii.gz", "c1"),
        ("c1_seg.nii.gz", "c1"),
        ("c1_pred.png", "c1"),
        ("a_b.nii", "a_b"),
        ("_seg.png", "_seg"),
    ],
)
def test_case_names_drop_extension_and_one_suffix(name, key):
    assert case_name(Path(name)) == key


def test_good_cases_have_known_scores(evaluated_3d):
    out, _ = evaluated_3d
    cases = pd.read_csv(out / "cases.csv")
    good = cases[cases["case"].str.startswith("case")].set_index(["case", "label"])
    for i, shift in enumerate((0, 1, 2, 3, 5)):
        row = good.loc[(f"case{i}", "label_1")]
        assert row["dice"] == pytest.approx((10 - shift) / 10, abs=1e-6)
        assert row["hd95"] == pytest.approx(shift * SPACING[0], abs=1e-5)
        assert row["volume_ref"] == pytest.approx(10 * 6 * 4 * VOXEL, rel=1e-6)
        assert row["volume_pred"] == pytest.approx(row["volume_ref"])
        assert row["units"] == "mm" and row["status"] == "ok"
        assert good.loc[(f"case{i}", "label_2"), "dice"] == pytest.approx(1.0)
    # the slab's thinnest extent is its depth: 6 voxels × 0.4 mm
    slab = good.xs("label_1", level="label")
    assert np.allclose(slab["thickness_mean_ref"], 6 * SPACING[1], rtol=0.05)
    assert np.allclose(slab["thickness_mean_pred"], slab["thickness_mean_ref"], rtol=0.05)


def test_every_bad_case_is_reported_not_fatal(evaluated_3d):
    out, summary = evaluated_3d
    cases = pd.read_csv(out / "cases.csv", keep_default_na=False)
    problem = {c: " ".join(g["problem"]) for c, g in cases.groupby("case")}
    assert "missing reference" in problem["orphan"]
    assert "missing prediction" in problem["lonely"]
    assert "shape mismatch" in problem["shape"]
    assert "spacing mismatch" in problem["spacing"]
    assert "corrupt.nii.gz" in problem["corrupt"]
    assert "empty prediction" in problem["empty"]
    empty = cases[cases["case"] == "empty"].set_index("label")
    assert float(empty.loc["label_1", "dice"]) == 0.0 and empty.loc["label_1", "status"] == "flagged"

    assert summary["n_cases"] == 11 and summary["n_evaluated"] == 6 and summary["n_skipped"] == 5
    assert {p["case"] for p in summary["problems"]} == {
        "orphan",
        "lonely",
        "shape",
        "spacing",
        "corrupt",
        "empty",
    }
    page = (out / "report.html").read_text()
    for word in ("missing reference", "shape mismatch", "spacing mismatch", "empty prediction", "corrupt"):
        assert word in page
    assert page.count("data:image/png;base64") >= 4  # agreement plots and worst-case overlays
    assert "case4: lowest Dice 0.500" in page  # the worst good case leads the overlays
    assert not list(out.glob("*.partial.csv")) and not list(out.glob(".tmp-*"))


def test_summary_and_agreement_files(evaluated_3d):
    out, summary = evaluated_3d
    assert json.loads((out / "summary.json").read_text())["n_cases"] == summary["n_cases"]
    label_1 = summary["labels"]["label_1"]
    dices = [1.0, 0.9, 0.8, 0.7, 0.5, 0.0]  # five good cases and the empty prediction
    assert label_1["dice"]["mean"] == pytest.approx(np.mean(dices), abs=1e-6)
    assert label_1["dice"]["sd"] == pytest.approx(np.std(dices, ddof=1), abs=1e-6)
    table = pd.read_csv(out / "agreement.csv").set_index(["label", "measure"])
    volume = table.loc[("label_2", "volume")]
    assert volume["n"] == 6 and volume["units"] == "mm³"
    # five exact volumes and one empty prediction: bias = −volume/6
    assert volume["bias"] == pytest.approx(-4 * 4 * 2 * VOXEL / 6)


def test_resume_after_a_crash_keeps_rows_and_finishes(folders_3d, evaluated_3d, tmp_path):
    out, _ = evaluated_3d
    finished = (out / "cases.csv").read_text()
    lines = finished.splitlines(keepends=True)
    # an interrupted run: header, a few rows, and a row cut in half
    (tmp_path / "cases.partial.csv").write_text("".join(lines[:4]) + lines[4][:10])
    evaluate_folder(*folders_3d, out=tmp_path)
    assert pd.read_csv(tmp_path / "cases.csv").equals(pd.read_csv(out / "cases.csv"))


def test_labels_and_measures_options(folders_3d, tmp_path):
    summary = evaluate_folder(*folders_3d, out=tmp_path, labels={"muscle": 1}, measures=["dice", "volume"])
    cases = pd.read_csv(tmp_path / "cases.csv")
    assert set(cases["label"].dropna()) == {"muscle"}
    assert "hd95" not in cases and "thickness_mean_ref" not in cases and "volume_ref" in cases
    assert list(summary["agreement"]["muscle"]) == ["volume"]


def test_two_workers_write_the_same_table(folders_3d, evaluated_3d, tmp_path):
    evaluate_folder(*folders_3d, out=tmp_path, workers=2)
    assert (tmp_path / "cases.csv").read_text() == (evaluated_3d[0] / "cases.csv").read_text()


def test_2d_png_masks_in_pixels_through_the_cli(tmp_path):
    pred, ref, out = tmp_path / "pred", tmp_path / "ref", tmp_path / "out"
    pred.mkdir()
    ref.mkdir()
    for i, shift in enumerate((0, 2, 4)):
        mask = np.zeros((40, 30), dtype=np.uint8)  # PIL rows × cols: depth × lateral
        mask[10:20, 5:25] = 255
        Image.fromarray(mask).save(ref / f"img{i}.png")
        Image.fromarray(np.roll(mask, shift, axis=0)).save(pred / f"img{i}_seg.png")
    Image.fromarray(np.zeros((40, 30), np.uint8)).save(pred / "img9_seg.png")

    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(out)]) == 0
    cases = pd.read_csv(out / "cases.csv").set_index("case")
    good = cases.loc[["img0", "img1", "img2"]]
    assert (good["units"] == "px").all() and (good["ndim"] == 2).all()
    assert good["dice"].tolist() == pytest.approx([1.0, 0.8, 0.6], abs=1e-6)
    assert good["hd95"].tolist() == pytest.approx([0.0, 2.0, 4.0], abs=1e-6)  # shifted along depth, in px
    assert good["volume_ref"].tolist() == pytest.approx([200.0] * 3)
    assert "missing reference" in cases.loc["img9", "problem"]
    assert json.loads((out / "summary.json").read_text())["agreement"]["label_1"]["volume"]["units"] == "px²"


def test_cli_reports_a_missing_folder(tmp_path, capsys):
    assert (
        main(["evaluate", "--pred", str(tmp_path / "nope"), "--ref", str(tmp_path), "--out", str(tmp_path)])
        == 2
    )
    assert "nope: not a folder" in capsys.readouterr().err


def test_real_aponeurosis_masks_against_shifted_copies(dl_track_dir, tmp_path):
    """Real 0/255 masks of several sizes; a 2-pixel shift in depth bounds every surface distance by 2 px."""
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    pred.mkdir()
    ref.mkdir()
    for source in sorted((dl_track_dir / "aponeurosis" / "masks").glob("*.png"))[:3]:
        mask = np.array(Image.open(source))
        mask[-2:] = 0  # nothing wraps round when rolled
        Image.fromarray(mask).save(ref / source.name)
        Image.fromarray(np.roll(mask, 2, axis=0)).save(pred / f"{source.stem}_pred.png")

    evaluate_folder(pred, ref, tmp_path / "out", measures=["dice", "hd95", "volume"])
    cases = pd.read_csv(tmp_path / "out" / "cases.csv")
    assert len(cases) == 3 and (cases["status"] == "ok").all() and (cases["units"] == "px").all()
    assert (cases["dice"] < 1).all() and (cases["dice"] > 0.3).all()
    assert ((cases["hd95"] > 0) & (cases["hd95"] <= 2 + 1e-6)).all()
    assert np.allclose(cases["volume_pred"], cases["volume_ref"])
