"""Batch evaluation of prediction folders: pairing, every bad-case kind, options, workers, report, CLI."""

from __future__ import annotations

import html
import json
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sonomuscle.cli import main
from sonomuscle.errors import InputError
from sonomuscle.evaluation import report
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
    good = cases[cases["case"].str.startswith("case")].set_index(["case", "class"])
    for i, shift in enumerate((0, 1, 2, 3, 5)):
        row = good.loc[(f"case{i}", "label_1")]
        assert row["dice"] == pytest.approx((10 - shift) / 10, abs=1e-6)
        assert row["hd95"] == pytest.approx(shift * SPACING[0], abs=1e-5)
        assert row["volume_ref"] == pytest.approx(10 * 6 * 4 * VOXEL, rel=1e-6)
        assert row["volume_pred"] == pytest.approx(row["volume_ref"])
        assert row["units"] == "mm" and row["status"] == "ok"
        assert good.loc[(f"case{i}", "label_2"), "dice"] == pytest.approx(1.0)
    assert "area_ref" not in cases  # 3D: volumes only


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
    empty = cases[cases["case"] == "empty"].set_index("class")
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
    label_1 = summary["classes"]["label_1"]
    dices = [1.0, 0.9, 0.8, 0.7, 0.5, 0.0]  # five good cases and the empty prediction
    assert label_1["dice"]["mean"] == pytest.approx(np.mean(dices), abs=1e-6)
    assert label_1["dice"]["sd"] == pytest.approx(np.std(dices, ddof=1), abs=1e-6)
    table = pd.read_csv(out / "agreement.csv").set_index(["class", "measure"])
    volume = table.loc[("label_2", "volume")]
    assert volume["n"] == 6 and volume["units"] == "mm³"
    # five exact volumes and one empty prediction: bias = −volume/6 (the CSV keeps 6 significant digits)
    assert volume["bias"] == pytest.approx(-4 * 4 * 2 * VOXEL / 6, rel=1e-5)


def test_resume_after_a_crash_keeps_rows_and_finishes(folders_3d, evaluated_3d, tmp_path):
    out, _ = evaluated_3d
    finished = (out / "cases.csv").read_text()
    lines = finished.splitlines(keepends=True)
    # an interrupted run: header, a few rows, and a row cut in half
    (tmp_path / "cases.partial.csv").write_text("".join(lines[:4]) + lines[4][:10])
    evaluate_folder(*folders_3d, out=tmp_path)
    assert pd.read_csv(tmp_path / "cases.csv").equals(pd.read_csv(out / "cases.csv"))


def test_classes_and_measures_options(folders_3d, tmp_path):
    # the keywords the 3D bundles' evaluate.json passes
    summary = evaluate_folder(*folders_3d, out=tmp_path, labels={"muscle": 1}, measures=["dice", "volume"])
    cases = pd.read_csv(tmp_path / "cases.csv")
    assert set(cases["class"].dropna()) == {"muscle"}
    assert "hd95" not in cases and "thickness_mean_ref" not in cases and "volume_ref" in cases
    assert list(summary["agreement"]["muscle"]) == ["volume"]


def test_two_workers_write_the_same_table(folders_3d, evaluated_3d, tmp_path):
    evaluate_folder(*folders_3d, out=tmp_path, workers=2)
    assert (tmp_path / "cases.csv").read_text() == (evaluated_3d[0] / "cases.csv").read_text()


def test_2d_png_masks_in_pixels_through_the_cli(tmp_path, capsys):
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
    assert good["area_ref"].tolist() == pytest.approx([200.0] * 3)
    assert "volume_ref" not in cases and "thickness_mean_ref" not in cases  # 2D areas; label_1 is no wall
    assert "missing reference" in cases.loc["img9", "problem"]
    assert json.loads((out / "summary.json").read_text())["agreement"]["label_1"]["area"]["units"] == "px²"
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "3 cases evaluated, 1 prediction without a reference (listed in report.html)",
        f"sonomuscle evaluate: 3 cases evaluated → {out / 'report.html'} (table {out / 'cases.csv'})",
    ]


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
    assert np.allclose(cases["area_pred"], cases["area_ref"])


def _png(path: Path, mask: np.ndarray) -> None:
    Image.fromarray(mask.astype(np.uint8)).save(path)


def _rect(rows: slice, cols: slice, shape=(40, 30)) -> np.ndarray:
    """A 0/255 mask; PIL rows are depth, columns lateral."""
    mask = np.zeros(shape, dtype=np.uint8)
    mask[rows, cols] = 255
    return mask


@pytest.fixture
def bundle_2d(tmp_path) -> dict[str, Path]:
    """What the 2D bundle's inference writes (``<stem>_aponeurosis.png``, ``<stem>_fascicle.png``, an overlay
    JPEG, measurements.csv), reference folders of ``<stem>.png`` per structure, and the images."""
    folders = {name: tmp_path / name for name in ("pred", "aponeurosis", "fascicle", "images")}
    for folder in folders.values():
        folder.mkdir()
    rng = np.random.default_rng(0)
    for i, shift in enumerate((0, 1, 2, 4)):
        stem = f"img{i}"
        _png(folders["aponeurosis"] / f"{stem}.png", _rect(slice(8, 14 + i), slice(2, 28)))
        _png(folders["pred"] / f"{stem}_aponeurosis.png", _rect(slice(8 + shift, 14 + 2 * i), slice(2, 28)))
        _png(folders["fascicle"] / f"{stem}.png", _rect(slice(20, 30), slice(5, 12 + i)))
        _png(folders["pred"] / f"{stem}_fascicle.png", _rect(slice(20, 30), slice(5 + shift, 12 + i + shift)))
        _png(folders["images"] / f"{stem}.png", rng.integers(0, 256, (40, 30)))
        Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(
            folders["pred"] / f"{stem}_overlay.jpg"
        )
    (folders["pred"] / "measurements.csv").write_text("image,thickness_mm\nimg0.png,1.0\n")
    return folders


def _evaluate_argv(pred: Path, refs: list[str], out: Path) -> list[str]:
    return ["evaluate", "--pred", str(pred), *[a for ref in refs for a in ("--ref", ref)], "--out", str(out)]


def test_bundle_outputs_pair_with_each_structures_references(bundle_2d, tmp_path, capsys):
    _png(bundle_2d["aponeurosis"] / "img9.png", _rect(slice(8, 14), slice(2, 28)))  # no prediction
    refs = [f"aponeurosis={bundle_2d['aponeurosis']}", f"fascicle={bundle_2d['fascicle']}"]
    assert main(_evaluate_argv(bundle_2d["pred"], refs, tmp_path / "out")) == 0

    cases = pd.read_csv(tmp_path / "out" / "cases.csv")
    assert set(cases["case"]) == {"img0", "img1", "img2", "img3", "img9"}  # overlays and CSV left alone
    ok = cases[cases["status"] == "ok"].set_index(["case", "class"])
    assert len(ok) == 8 and set(ok.index.get_level_values("class")) == {"aponeurosis", "fascicle"}
    assert ok.loc[("img2", "fascicle"), "pred_file"] == "img2_fascicle.png"
    assert ok.loc[("img0", "aponeurosis"), "dice"] == pytest.approx(1.0)
    assert ok.loc[("img1", "fascicle"), "dice"] == pytest.approx(7 / 8)  # 8 columns shifted by 1
    missing = cases[cases["case"] == "img9"].iloc[0]
    assert missing["class"] == "aponeurosis" and "missing prediction" in missing["problem"]
    assert capsys.readouterr().out.splitlines()[0] == (
        "4 cases evaluated, 1 reference without a prediction (listed in report.html)"
    )


def test_one_prediction_suffix_pairs_with_a_plain_reference_folder(bundle_2d, tmp_path):
    for path in bundle_2d["pred"].glob("*_fascicle.png"):
        path.unlink()
    summary = evaluate_folder(
        bundle_2d["pred"], bundle_2d["aponeurosis"], tmp_path / "out", measures=["dice"]
    )
    assert list(summary["classes"]) == ["aponeurosis"] and summary["n_evaluated"] == 4
    assert summary["n_skipped"] == 0


def test_several_prediction_suffixes_ask_which_structure_the_references_are(bundle_2d, tmp_path, capsys):
    assert main(_evaluate_argv(bundle_2d["pred"], [str(bundle_2d["aponeurosis"])], tmp_path / "out")) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("sonomuscle evaluate: error: ")
    assert "_aponeurosis, _fascicle" in err[0] and f"--ref aponeurosis={bundle_2d['aponeurosis']}" in err[0]


def test_a_bare_reference_folder_and_structures_do_not_mix(bundle_2d, tmp_path, capsys):
    refs = [str(bundle_2d["aponeurosis"]), f"fascicle={bundle_2d['fascicle']}"]
    assert main(_evaluate_argv(bundle_2d["pred"], refs, tmp_path / "out")) == 2
    assert "give --ref DIR once, or --ref STRUCTURE=DIR" in capsys.readouterr().err


def test_nothing_paired_is_an_error_naming_both_sides(tmp_path, capsys):
    pred, ref, out = tmp_path / "pred", tmp_path / "ref", tmp_path / "out"
    pred.mkdir()
    ref.mkdir()
    _png(pred / "scan1.png", _rect(slice(8, 14), slice(2, 28)))
    for name in ("other1.png", "other2.png"):
        _png(ref / name, _rect(slice(8, 14), slice(2, 28)))
    assert main(_evaluate_argv(pred, [str(ref)], out)) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("sonomuscle evaluate: error: ")
    for text in (f"{pred} holds 1 mask file (e.g. scan1.png)", f"{ref} holds 2 mask files (e.g. other1.png)"):
        assert text in err[0]
    assert not out.exists()


def test_3d_bundle_predictions_pair_by_name_and_its_output_folder_gets_a_hint(tmp_path):
    """The 3D bundles' SaveImaged (postfix "") writes ``OUTPUT/pred/<image>.nii.gz``."""
    output, ref = tmp_path / "bundle_out", tmp_path / "ref"
    (output / "pred").mkdir(parents=True)
    ref.mkdir()
    _save_nifti(output / "pred" / "case_000.nii.gz", _volume(1))
    _save_nifti(ref / "case_000.nii.gz", _volume())
    with pytest.raises(InputError, match=r"try --pred .*bundle_out/pred"):
        evaluate_folder(output, ref, tmp_path / "out")
    summary = evaluate_folder(output / "pred", ref, tmp_path / "out", measures=["dice"])
    assert summary["n_evaluated"] == 1 and summary["classes"]["label_1"]["dice"]["mean"] == pytest.approx(0.9)


def test_classes_json_names_the_classes_and_thickness_is_for_walls_only(tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    pred.mkdir()
    ref.mkdir()
    _save_nifti(ref / "case0.nii.gz", _volume())
    _save_nifti(pred / "case0.nii.gz", _volume())
    (pred / "classes.json").write_text(json.dumps({"wall": 1, "lumen": 2}))

    evaluate_folder(pred, ref, tmp_path / "default")
    rows = pd.read_csv(tmp_path / "default" / "cases.csv").set_index("class")
    assert list(rows.index) == ["lumen", "wall"]
    # the slab's thinnest extent is its depth: 6 voxels × 0.4 mm; the filled lumen gets no thickness
    assert rows.loc["wall", "thickness_mean_ref"] == pytest.approx(6 * SPACING[1], rel=0.05)
    assert np.isnan(rows.loc["lumen", "thickness_mean_ref"])

    evaluate_folder(pred, ref, tmp_path / "asked", measures=["thickness"])
    rows = pd.read_csv(tmp_path / "asked" / "cases.csv").set_index("class")
    assert rows["thickness_mean_ref"].notna().all()


def test_report_shows_icc_with_its_ci_and_lists_warnings_instead_of_stderr(bundle_2d, tmp_path):
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        summary = evaluate_folder(bundle_2d["pred"], {"aponeurosis": bundle_2d["aponeurosis"]}, out)
    assert not [w for w in escaped if issubclass(w.category, (UserWarning, RuntimeWarning))]

    page = (out / "report.html").read_text()
    stats = summary["agreement"]["aponeurosis"]["area"]
    assert stats["units"] == "px²" and stats["icc_ci_lower"] < stats["icc"] < stats["icc_ci_upper"]
    assert f"{stats['icc']:.3f} ({stats['icc_ci_lower']:.3f} to {stats['icc_ci_upper']:.3f})" in page
    section = page.split("<h2>Warnings")[1]
    assert "aponeurosis area: Sample size is too small" in section  # pingouin, 4 cases
    assert all(html.escape(message) in section for message in summary["warnings"])


def test_overlays_are_drawn_on_the_images(bundle_2d, tmp_path, monkeypatch):
    drawn = []
    draw = report.overlay_figure

    def recording(overlay: report.Overlay):
        drawn.append(overlay)
        return draw(overlay)

    monkeypatch.setattr(report, "overlay_figure", recording)
    refs = {"aponeurosis": bundle_2d["aponeurosis"], "fascicle": bundle_2d["fascicle"]}
    evaluate_folder(bundle_2d["pred"], refs, tmp_path / "out", images=bundle_2d["images"])

    worst = drawn[0]
    case = worst.title.split(":")[0]
    image = np.asarray(
        Image.open(bundle_2d["images"] / f"{case}.png"), dtype=float
    ).T  # (X, Y) like the masks
    assert np.allclose(worst.image, image)
    assert [name for name, _, _ in worst.masks] == ["aponeurosis", "fascicle"]
    assert "Outlines drawn over the images in" in (tmp_path / "out" / "report.html").read_text()


def test_spacing_gives_png_masks_millimetres(bundle_2d, tmp_path):
    refs = [f"aponeurosis={bundle_2d['aponeurosis']}"]
    main(_evaluate_argv(bundle_2d["pred"], refs, tmp_path / "px"))
    main([*_evaluate_argv(bundle_2d["pred"], refs, tmp_path / "mm"), "--spacing", "0.2"])
    in_px = pd.read_csv(tmp_path / "px" / "cases.csv").set_index("case")
    in_mm = pd.read_csv(tmp_path / "mm" / "cases.csv").set_index("case")
    assert set(in_px["units"]) == {"px"} and set(in_mm["units"]) == {"mm"}
    assert in_mm["area_ref"].to_numpy() == pytest.approx(0.04 * in_px["area_ref"].to_numpy())
    assert in_mm["hd95"].to_numpy() == pytest.approx(0.2 * in_px["hd95"].to_numpy())


def test_echo_intensity_of_label_maps_in_their_images_and_calibrated_predictions(tmp_path):
    """Label maps of two structures: echo intensity (grey levels) of prediction and reference in the image,
    and a NIfTI prediction's calibration serving PNG references that have none."""
    pred, ref, images = (tmp_path / name for name in ("pred", "ref", "images"))
    for folder in (pred, ref, images):
        folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        label_map = np.zeros((40, 30), np.uint8)  # (X, Y)
        label_map[5 : 15 + i, 5:20] = 1
        label_map[25:35, 10 : 20 + i] = 2
        grey = rng.integers(0, 60, (40, 30)).astype(np.uint8)
        grey[label_map == 2] += 100
        Image.fromarray(label_map.T).save(ref / f"c{i}.png")
        Image.fromarray(grey.T).save(images / f"c{i}.png")
        _save_nifti(pred / f"c{i}.nii.gz", np.roll(label_map, 1, axis=0), spacing=(0.2, 0.2, 1.0))
    evaluate_folder(pred, ref, tmp_path / "out", labels={"rf": 1, "vl": 2}, images=images)
    table = pd.read_csv(tmp_path / "out" / "cases.csv")
    assert set(table["units"]) == {"mm"}
    assert table["area_ref"].to_numpy() == pytest.approx(
        0.04 * np.array([150, 100, 165, 110, 180, 120, 195, 130])
    )
    vl = table[table["class"] == "vl"]
    assert (vl["echo_ref"] > 120).all() and (vl["echo_pred"] - vl["echo_ref"]).abs().max() < 15
    agreement = pd.read_csv(tmp_path / "out" / "agreement.csv")
    echo = agreement[agreement["measure"] == "echo"]
    assert set(echo["class"]) == {"rf", "vl"} and set(echo["units"]) == {"grey levels"}
    assert "echo" in (tmp_path / "out" / "report.html").read_text()
