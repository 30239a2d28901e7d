"""``sonomuscle datalist``: pairing, checks with reasons, subject-grouped splits, folds, the command."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest
from PIL import Image

from sonomuscle.cli import main
from sonomuscle.data.datalist import build_datalist
from sonomuscle.data.readers import load_image
from sonomuscle.errors import InputError

SHAPE = (24, 32)  # rows × cols on disk


def picture(seed: int, shape=SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def mask(shape=SHAPE) -> np.ndarray:
    out = np.zeros(shape, np.uint8)
    out[5:9] = 255
    return out


def make_folder(root: Path, subjects: dict[str, int]) -> tuple[Path, Path]:
    """``<subject>_<k>.png`` images with same-named masks; returns (images, masks)."""
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for i, (subject, n) in enumerate(subjects.items()):
        for k in range(n):
            Image.fromarray(picture(100 * i + k)).save(images / f"{subject}_{k}.png")
            Image.fromarray(mask()).save(masks / f"{subject}_{k}.png")
    return images, masks


def entries(datalist: dict) -> list[dict]:
    return [e for split in ("training", "validation", "test") for e in datalist[split]]


def test_pairs_across_extensions_and_paths_resolve(tmp_path):
    images, masks = tmp_path / "im", tmp_path / "lab"
    images.mkdir()
    masks.mkdir()
    Image.fromarray(picture(0)).save(images / "a.png")
    Image.fromarray(mask()).save(masks / "a.tif")
    nib.save(nib.Nifti1Image(np.zeros((5, 6, 7), np.float32), np.eye(4)), images / "b.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((5, 6, 7), np.uint8), np.eye(4)), masks / "b.nii.gz")
    out = tmp_path / "lists" / "datalist.json"
    datalist = build_datalist(images, {"label": masks}, out, val_fraction=0.5)
    assert json.loads(out.read_text()) == datalist
    pairs = {Path(e["image"]).name: Path(e["label"]).name for e in entries(datalist)}
    assert pairs == {"a.png": "a.tif", "b.nii.gz": "b.nii.gz"}
    for entry in entries(datalist):
        assert entry["image"].startswith("../im/")
        image, _ = load_image(out.parent / entry["image"])
        label, _ = load_image(out.parent / entry["label"], mask=True)
        assert image.shape == label.shape
    assert datalist["rejected"] == []


def test_spacing_only_for_files_without_calibration(tmp_path):
    images, masks = make_folder(tmp_path, {"s": 1})
    nib.save(nib.Nifti1Image(np.zeros((5, 6, 7), np.float32), np.diag([2, 2, 2, 1])), images / "v.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((5, 6, 7), np.uint8), np.diag([2, 2, 2, 1])), masks / "v.nii.gz")
    datalist = build_datalist(images, {"label": masks}, tmp_path / "d.json", val_fraction=0.5, spacing=0.08)
    spacing = {Path(e["image"]).name: e.get("spacing") for e in entries(datalist)}
    assert spacing == {"s_0.png": [0.08, 0.08], "v.nii.gz": None}


def test_several_label_kinds_keep_what_each_image_has(tmp_path):
    images, apo = make_folder(tmp_path, {"s": 3})
    fasc = tmp_path / "fascicle"
    fasc.mkdir()
    Image.fromarray(mask()).save(fasc / "s_1.png")
    datalist = build_datalist(images, {"aponeurosis": apo, "fascicle": fasc}, tmp_path / "d.json")
    kinds = {Path(e["image"]).name: sorted(set(e) - {"image"}) for e in entries(datalist)}
    assert kinds == {
        "s_0.png": ["aponeurosis"],
        "s_1.png": ["aponeurosis", "fascicle"],
        "s_2.png": ["aponeurosis"],
    }


def test_every_unusable_file_is_rejected_with_its_reason(tmp_path, capsys):
    images, masks = make_folder(tmp_path, {"s": 6})
    Image.fromarray(picture(1) // 2).save(masks / "s_0.png")  # grey values, not a mask
    Image.fromarray(mask((20, 32))).save(masks / "s_1.png")  # wrong size
    (masks / "s_2.png").unlink()  # image without label
    (images / "s_3.png").write_bytes(b"not a png")  # corrupt image
    Image.fromarray(mask()).save(masks / "orphan.png")  # label without image
    (images / "notes.txt").write_text("scanner settings")
    datalist = build_datalist(images, {"label": masks}, tmp_path / "d.json")
    reasons = {Path(r["file"]).as_posix(): r["reason"] for r in datalist["rejected"]}
    assert reasons.keys() == {
        "masks/s_0.png",
        "images/s_0.png",
        "masks/s_1.png",
        "images/s_1.png",
        "images/s_2.png",
        "images/s_3.png",
        "masks/s_3.png",
        "masks/orphan.png",
        "images/notes.txt",
    }
    assert "mask values must be 0/1 or 0/255" in reasons["masks/s_0.png"]
    assert "size (32, 20) differs from its image s_1.png (32, 24)" in reasons["masks/s_1.png"]
    assert reasons["images/s_2.png"] == "no label file with the same name"
    assert reasons["images/s_3.png"].startswith("cannot read file")
    assert reasons["masks/orphan.png"].startswith("no image named orphan.*")
    assert reasons["images/notes.txt"] == "unsupported file type '.txt'"
    assert sorted(Path(e["image"]).name for e in entries(datalist)) == ["s_4.png", "s_5.png"]
    err = capsys.readouterr().err
    assert sum(line.startswith("rejected ") for line in err.splitlines()) == len(reasons)


@pytest.mark.parametrize("case", ["missing", "empty", "unpaired"])
def test_nothing_to_pair_is_an_input_error(tmp_path, case):
    images, masks = make_folder(tmp_path, {"s": 2})
    if case == "missing":
        masks = tmp_path / "nowhere"
        problem = "nowhere: folder not found"
    elif case == "empty":
        for f in masks.iterdir():
            f.unlink()
        problem = "masks: no image files found"
    else:
        for f in masks.iterdir():
            f.rename(masks / f"other_{f.name}")
        problem = "images: no image could be paired with a usable label"
    with pytest.raises(InputError, match=problem):
        build_datalist(images, {"label": masks}, tmp_path / "d.json")
    assert not (tmp_path / "d.json").exists()


SUBJECTS = {f"P{i:02d}": n for i, n in enumerate([1, 2, 3, 4, 1, 2, 3, 4, 2, 2])}  # 24 images, 10 subjects


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, Path]:
    return make_folder(tmp_path_factory.mktemp("cohort"), SUBJECTS)


def split_of(datalist: dict) -> dict[str, str]:
    return {
        Path(e["image"]).name: split for split in ("training", "validation", "test") for e in datalist[split]
    }


def test_group_by_keeps_each_subject_in_one_split(tmp_path, cohort):
    datalist = build_datalist(
        *cohort[:1],
        {"label": cohort[1]},
        tmp_path / "d.json",
        val_fraction=0.2,
        test_fraction=0.2,
        group_by=r"^(P\d+)_",
    )
    by_subject: dict[str, set[str]] = {}
    for split in ("training", "validation", "test"):
        for entry in datalist[split]:
            assert Path(entry["image"]).name.startswith(entry["subject"] + "_")
            by_subject.setdefault(entry["subject"], set()).add(split)
    assert by_subject.keys() == SUBJECTS.keys()
    assert all(len(splits) == 1 for splits in by_subject.values())
    n_subjects = {s: len({e["subject"] for e in datalist[s]}) for s in ("training", "validation", "test")}
    assert n_subjects == {"training": 6, "validation": 2, "test": 2}


def test_split_is_deterministic_per_seed(tmp_path, cohort):
    def run(seed: int) -> dict[str, str]:
        return split_of(
            build_datalist(*cohort[:1], {"label": cohort[1]}, tmp_path / f"{seed}.json", seed=seed)
        )

    assert run(0) == run(0)
    assert run(0) != run(1)
    assert sorted(run(0).values()).count("validation") == round(0.2 * 24)


def test_folds_group_subjects_balance_images_and_fold_0_validates(tmp_path, cohort):
    datalist = build_datalist(
        *cohort[:1],
        {"label": cohort[1]},
        tmp_path / "d.json",
        folds=4,
        test_fraction=0.1,
        group_by=r"^(P\d+)_",
    )
    assert all("fold" not in e for e in datalist["test"])
    folds_of: dict[str, set[int]] = {}
    sizes = [0] * 4
    for entry in datalist["training"] + datalist["validation"]:
        folds_of.setdefault(entry["subject"], set()).add(entry["fold"])
        sizes[entry["fold"]] += 1
    assert all(len(f) == 1 for f in folds_of.values())
    assert {e["fold"] for e in datalist["validation"]} == {0}
    assert 0 not in {e["fold"] for e in datalist["training"]}
    assert max(sizes) - min(sizes) <= max(SUBJECTS.values())  # no fold more than one subject heavier
    assert sum(sizes) + len(datalist["test"]) == 24


def test_cli_prints_one_line_error_and_returns_2(tmp_path, capsys):
    code = main(
        ["datalist", "--images", str(tmp_path / "none"), "--labels", str(tmp_path), "--out", "d.json"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == f"sonomuscle datalist: error: {tmp_path / 'none'}: folder not found"


def test_cli_rejects_bad_group_by_and_writes_with_good_one(tmp_path, cohort, capsys):
    args = ["datalist", "--images", str(cohort[0]), "--labels", f"aponeurosis={cohort[1]}"]
    assert main([*args, "--out", str(tmp_path / "d.json"), "--group-by", "P\\d+"]) == 2
    assert "needs a group naming the subject" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "d.json"), "--group-by", "^(P\\d+)_", "--folds", "3"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    datalist = json.loads((tmp_path / "d.json").read_text())
    n = {s: len(datalist[s]) for s in ("training", "validation", "test")}
    assert summary.endswith(f"{n['training']} training, {n['validation']} validation, 0 test, 0 rejected")
    assert sum(n.values()) == 24 and "aponeurosis" in datalist["training"][0]


def test_real_aponeurosis_data(tmp_path, dl_track_dir):
    folder = dl_track_dir / "aponeurosis"
    n_images = len(list((folder / "images").glob("*.png")))
    datalist = build_datalist(folder / "images", {"aponeurosis": folder / "masks"}, tmp_path / "d.json")
    assert datalist["rejected"] == []
    assert len(datalist["validation"]) == round(0.2 * n_images)
    assert len(datalist["training"]) == n_images - round(0.2 * n_images)
    entry = datalist["validation"][0]
    image, _ = load_image(tmp_path / entry["image"])
    label, _ = load_image(tmp_path / entry["aponeurosis"], mask=True)
    assert image.shape == label.shape and 0 < label.mean() < 0.5


def test_label_maps_of_named_classes_are_declared_and_checked(tmp_path, capsys):
    images, maps = tmp_path / "images", tmp_path / "maps"
    images.mkdir()
    maps.mkdir()
    for k, values in enumerate(([0, 1, 2], [0, 1], [0, 2], [0, 1, 5])):
        Image.fromarray(picture(k)).save(images / f"t{k}.png")
        label_map = np.zeros(SHAPE, np.uint8)
        for i, value in enumerate(values):
            label_map[4 * i : 4 * i + 4] = value
        Image.fromarray(label_map).save(maps / f"t{k}.png")
    out = tmp_path / "datalist.json"
    code = main(
        [
            "datalist",
            "--images",
            str(images),
            "--labels",
            str(maps),
            "--out",
            str(out),
            "--classes",
            "rf=1,vl=2",
        ]
    )
    assert code == 0
    datalist = json.loads(out.read_text())
    assert datalist["classes"] == {"rf": 1, "vl": 2}
    assert sorted(Path(e["label"]).name for e in entries(datalist)) == ["t0.png", "t1.png", "t2.png"]
    (rejected,) = datalist["rejected"][:1]
    assert (
        rejected["file"].endswith("t3.png")
        and "values [5] are not among the declared classes" in rejected["reason"]
    )
    assert "t3.png: values [5]" in capsys.readouterr().err


def test_bad_classes_option_is_one_line(tmp_path, capsys):
    images, masks = make_folder(tmp_path, {"s1": 2})
    with pytest.raises(SystemExit):
        main(
            [
                "datalist",
                "--images",
                str(images),
                "--labels",
                str(masks),
                "--out",
                str(tmp_path / "d.json"),
                "--classes",
                "rf=1,rf=2",
            ]
        )
    assert "--classes names 'rf' twice" in capsys.readouterr().err


def test_partial_label_maps_list_the_classes_each_outlines(tmp_path):
    images, maps = tmp_path / "images", tmp_path / "maps"
    images.mkdir()
    maps.mkdir()
    for k, values in enumerate(([0, 1, 2], [0, 2], [0], [0, 1])):
        Image.fromarray(picture(k)).save(images / f"t{k}.png")
        label_map = np.zeros(SHAPE, np.uint8)
        for i, value in enumerate(values):
            label_map[4 * i : 4 * i + 4] = value
        Image.fromarray(label_map).save(maps / f"t{k}.png")
    datalist = build_datalist(
        images, {"label": maps}, tmp_path / "d.json", classes={"rf": 1, "vl": 2}, partial=True
    )
    annotated = {Path(e["image"]).stem: e["annotated"] for e in entries(datalist)}
    assert annotated == {"t0": ["rf", "vl"], "t1": ["vl"], "t3": ["rf"]}
    assert any("outlines no class" in r["reason"] for r in datalist["rejected"])
    with pytest.raises(InputError, match="--partial is for label maps"):
        build_datalist(images, {"label": maps}, tmp_path / "e.json", partial=True)


def test_palette_label_maps_are_read_by_their_indices(tmp_path):
    """Label maps as PASCAL VOC and many annotation tools save them: indexed colour, 1 dark red, 2 dark green."""
    images, maps = tmp_path / "images", tmp_path / "maps"
    images.mkdir()
    maps.mkdir()
    for k in range(3):
        Image.fromarray(picture(k)).save(images / f"t{k}.png")
        label_map = Image.fromarray(np.repeat(np.arange(3, dtype=np.uint8), SHAPE[0] // 3 + 1)[: SHAPE[0], None]
                                    .repeat(SHAPE[1], axis=1), mode="L").convert("P")  # fmt: skip
        label_map.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0])
        label_map.save(maps / f"t{k}.png")
    out = tmp_path / "datalist.json"
    args = ["datalist", "--images", str(images), "--labels", str(maps), "--out", str(out)]
    assert main([*args, "--classes", "nerve=1,vessel=2"]) == 0
    datalist = json.loads(out.read_text())
    assert len(entries(datalist)) == 3 and not datalist.get("rejected")


def _slicer_segmentation(path: Path, label_map: np.ndarray, segments: dict[str, int], layers=None) -> None:
    """A 2D segmentation as 3D Slicer saves it: a one-slice label volume with each segment in the header."""
    header = {
        "space": "left-posterior-superior",
        "space directions": np.diag([0.1, 0.1, 1.0]),
        "space origin": np.zeros(3),
    }
    for i, (name, value) in enumerate(segments.items()):
        header |= {
            f"Segment{i}_ID": f"Segment_{i + 1}",
            f"Segment{i}_Name": name,
            f"Segment{i}_LabelValue": str(value),
            f"Segment{i}_Layer": str(i if layers else 0),
        }
    nrrd.write(str(path), label_map.T[..., None].astype(np.uint8), header)


def test_slicer_segmentations_name_their_classes(tmp_path):
    images, maps = tmp_path / "images", tmp_path / "maps"
    images.mkdir()
    maps.mkdir()
    segments = {"nerve": 1, "blood vessel": 2}
    for k in range(3):
        Image.fromarray(picture(k)).save(images / f"t{k}.png")
        label_map = np.zeros(SHAPE, np.uint8)
        label_map[2:8], label_map[10:16] = 1, 2
        _slicer_segmentation(maps / f"t{k}.seg.nrrd", label_map, segments)
    out = tmp_path / "datalist.json"
    assert main(["datalist", "--images", str(images), "--labels", str(maps), "--out", str(out)]) == 0
    datalist = json.loads(out.read_text())
    assert datalist["classes"] == {"nerve": 1, "blood_vessel": 2}
    assert sorted(Path(e["label"]).name for e in entries(datalist)) == [f"t{k}.seg.nrrd" for k in range(3)]
    array, _ = load_image(maps / "t0.seg.nrrd", labels=True)
    assert array.shape == SHAPE[::-1] and set(np.unique(array)) == {0, 1, 2}


def test_overlapping_slicer_segments_are_one_line(tmp_path, capsys):
    images, maps = tmp_path / "images", tmp_path / "maps"
    images.mkdir()
    maps.mkdir()
    Image.fromarray(picture(0)).save(images / "t0.png")
    _slicer_segmentation(maps / "t0.seg.nrrd", np.zeros(SHAPE, np.uint8), {"a": 1, "b": 1}, layers=True)
    out = tmp_path / "datalist.json"
    assert main(["datalist", "--images", str(images), "--labels", str(maps), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "t0.seg.nrrd: its segments overlap (2 layers)" in err
