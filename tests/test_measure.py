"""``sonomuscle measure`` with the shipped weights: mixed inputs, bad files skipped, calibration from each source."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import sonomuscle.measure
from sonomuscle.cli import main
from sonomuscle.data.phantoms.architecture2d import make_phantom
from test_readers import write_dicom

CANVAS = (400, 500)  # (X, Y) of the black screen capture around a 256 × 256 phantom picture


def _grey(array_xy: np.ndarray) -> np.ndarray:
    """(X, Y) float image → uint8 rows × columns as a file stores it."""
    scaled = (array_xy - array_xy.min()) / (array_xy.max() - array_xy.min())
    return np.ascontiguousarray((scaled * 255).astype(np.uint8).T)


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    return _grey(make_phantom(np.random.default_rng(7)).image)


@pytest.fixture
def inputs(tmp_path, picture):
    """A folder with a plain picture, the same picture in a black canvas, a broken PNG, a 1-pixel PNG, a
    text file and a broken video."""
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(picture).save(folder / "plain.png")
    canvas = np.zeros(CANVAS[::-1], np.uint8)
    canvas[100:356, 80:336] = picture
    Image.fromarray(canvas).save(folder / "canvas.png")
    (folder / "broken.png").write_bytes(b"not a png")
    Image.fromarray(np.full((1, 1), 128, np.uint8)).save(folder / "dot.png")  # reads fine, cannot be measured
    (folder / "notes.txt").write_text("ignored: not an image")
    (folder / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")  # a video that cannot be decoded
    return folder


def _measure(capsys, *args) -> tuple[int, pd.DataFrame | None, str]:
    code = main(["measure", *map(str, args)])
    err = capsys.readouterr().err
    out = args[args.index("--out") + 1]
    table = out / "measurements.csv"
    return code, (pd.read_csv(table).set_index("image") if table.exists() else None), err


def test_a_mixed_folder_is_measured_and_bad_paths_get_one_line(tmp_path, inputs, capsys):
    out = tmp_path / "out"
    code, rows, err = _measure(capsys, inputs, tmp_path / "missing.png", "--out", out)
    assert code == 0
    assert sorted(p.split("/")[-1] for p in rows.index) == ["canvas.png", "plain.png"]
    assert (rows["units"] == "px").all() and (rows["calibration"] == "none").all()
    assert rows["thickness"].notna().all() and rows["error"].isna().all()
    confidence = rows[["confidence_aponeurosis", "confidence_fascicle"]]
    # the canvas is cropped to the same picture, so the network is as sure of both; and of a clean phantom,
    # surer than of the least sure 5 % of its validation images (the flags' thresholds)
    assert np.abs(confidence.iloc[0] - confidence.iloc[1]).max() < 0.02
    assert not rows["flags"].fillna("").str.contains("low model confidence").any()
    skipped = [line for line in err.splitlines() if line.startswith("sonomuscle measure: skipped")]
    assert len(skipped) == 4
    assert any("dot.png" in line and "1×1 pixels is too small" in line for line in skipped)
    assert any("clip.mp4" in line and "cannot read video" in line for line in skipped)
    assert any("broken.png" in line and "cannot read" in line for line in skipped)
    assert any("missing.png" in line and "not found" in line for line in skipped)
    assert (out / "canvas_overlay.jpg").is_file() and (out / "plain_overlay.jpg").is_file()
    assert "flags" in rows and "results_flagged" in pd.read_excel(out / "measurements.xlsx", "summary")
    book = pd.read_excel(out / "measurements.xlsx", sheet_name=None)
    assert len(book["images"]) == 2 and set(book["summary"]["units"]) == {"px"}


def test_spacing_and_depth_scale_lengths_and_a_file_calibration_wins(tmp_path, inputs, picture, capsys):
    canvas = inputs / "canvas.png"
    dicom = write_dicom(tmp_path / "calibrated.dcm", picture, regions=[(0.015, 0.015)])  # 0.15 mm
    _, pixels, _ = _measure(capsys, canvas, dicom, "--out", tmp_path / "px")
    _, spaced, _ = _measure(capsys, canvas, dicom, "--spacing", 0.2, "--out", tmp_path / "mm")
    _, deep, _ = _measure(capsys, canvas, "--depth", 40, "--out", tmp_path / "depth")
    (px,), (mm,), (depth,) = (
        t.loc[[i for i in t.index if i.endswith("canvas.png")]].iloc for t in (pixels, spaced, deep)
    )
    assert (mm["units"], mm["calibration"], depth["calibration"]) == ("mm", "spacing", "depth")
    for measure in ("thickness", "fascicle_length"):
        assert mm[measure] == pytest.approx(0.2 * px[measure], rel=1e-3)
        assert depth[measure] == pytest.approx(40 / 256 * px[measure], rel=1e-3)  # the picture's 256 rows
    assert mm["pennation_angle"] == pytest.approx(px["pennation_angle"], abs=1e-9)
    for table in (pixels, spaced):
        dicom_row = table.loc[str(dicom.resolve())]
        assert (dicom_row["calibration"], dicom_row["units"]) == ("file", "mm")
    # the user's box around the picture gives what the found one gives; a box off the image is one line
    _, boxed, _ = _measure(
        capsys, canvas, "--depth", 40, "--crop", "80,100,256,256", "--out", tmp_path / "box"
    )
    assert boxed.iloc[0]["thickness"] == pytest.approx(depth["thickness"], rel=1e-3)
    assert main(["measure", str(canvas), "--crop", "300,0,200,10", "--out", str(tmp_path / "off")]) == 2
    assert "crop box x,y,width,height = [300, 0, 200, 10] does not fit" in capsys.readouterr().err
    summary = pd.read_excel(tmp_path / "px" / "measurements.xlsx", sheet_name="summary")
    thickness = summary[summary["measure"] == "thickness"].set_index("units")["n"]
    assert thickness.to_dict() == {"mm": 1, "px": 1}  # millimetres and pixels never pooled


def test_bad_options_are_one_line_errors(tmp_path, inputs, capsys):
    assert main(["measure", str(inputs), "--spacing", "0", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--spacing must be a positive number" in err
    with pytest.raises(SystemExit):  # argparse: two calibrations at once
        main(["measure", str(inputs), "--spacing", "0.1", "--depth", "40", "--out", str(tmp_path / "o")])
    (tmp_path / "empty").mkdir()
    assert main(["measure", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "nothing to measure" in capsys.readouterr().err


def test_float32_and_no_mirror_turn_the_bundles_options_off(tmp_path, inputs, monkeypatch):
    """``--float32`` reaches the bundle as ``amp`` false, ``--no-mirror`` as ``mirror_average`` false
    (test_inferers: what each turns off)."""
    runs = []
    monkeypatch.setattr(sonomuscle.measure, "run_config", lambda *args, **overrides: runs.append(overrides))
    for flags in ([], ["--float32"], ["--no-mirror"]):
        main(["measure", str(inputs / "plain.png"), *flags, "--out", str(tmp_path / "o")])
    assert [(run["amp"], run["mirror_average"]) for run in runs] == [
        (True, True),
        (False, True),
        (True, False),
    ]


def test_thickness_where_the_user_measures_it(tmp_path, inputs, capsys):
    """Half the width is the centre: the vertical thickness there is the centre's; a bad place is one line."""
    _, rows, _ = _measure(capsys, inputs / "plain.png", "--thickness-at", "0.5", "--out", tmp_path / "o")
    (row,) = rows.itertuples()
    assert row.thickness_vertical_at == pytest.approx(row.thickness_vertical, rel=1e-6)
    assert row.thickness_at == pytest.approx(row.thickness, rel=1e-6)
    _, left, _ = _measure(capsys, inputs / "plain.png", "--thickness-at", "10px", "--out", tmp_path / "l")
    assert left.iloc[0]["thickness_vertical_at"] != pytest.approx(row.thickness_vertical_at, abs=1e-3)
    assert (
        main(["measure", str(inputs / "plain.png"), "--thickness-at", "left", "--out", str(tmp_path / "b")])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "thickness position 'left'" in err


def test_flagged_results_are_shown_with_their_overlays(tmp_path):
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(tmp_path / "scan_overlay.jpg")
    flagged = pd.DataFrame(
        [
            {"image": "/data/scan.png", "flags": "low model confidence", "thickness": 20.0},
            {"image": "/data/loop.mp4", "frame": 7, "flags": "thickness jumped", "thickness": 21.0},
        ]
    )
    table = sonomuscle.measure.flagged_table(flagged, tmp_path)
    assert '<a href="scan_overlay.jpg"><img alt="scan" src="data:image/jpeg;base64,' in table
    assert '<a href="loop_overlay.mp4">video, frame 7</a>' in table
    assert "low model confidence" in table and "thickness jumped" in table
