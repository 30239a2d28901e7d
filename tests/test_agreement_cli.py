"""``sonomuscle agreement``: statistics against hand-computed values, matching, units, the command end to end
and the human spread of the real TimTrack observers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sonomuscle.cli import main
from sonomuscle.errors import InputError
from sonomuscle.evaluation.agreement import (
    HUMANS,
    SOFTWARE,
    SOFTWARE_UNFLAGGED,
    compare,
    human_spread,
    match_items,
    match_names,
    ratings_table,
    read_observers,
    software_agreement,
)
from test_agreement import icc_a1_by_hand

# 5 items rated by 3 observers; their mean is 10, 13, 15, 21, 18
OBSERVERS = {
    "A": [10.0, 12.0, 15.0, 20.0, 18.0],
    "B": [11.0, 14.0, 14.0, 22.0, 17.0],
    "C": [9.0, 13.0, 16.0, 21.0, 19.0],
}
SOFTWARE_VALUES = [11.0, 12.0, 17.0, 21.0, 20.0]  # differences to the mean 1, −1, 2, 0, 2


def _by_hand(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    diff = pred - ref
    bias = diff.sum() / len(diff)
    sd = math.sqrt(((diff - bias) ** 2).sum() / (len(diff) - 1))
    return {
        "bias": bias,
        "mae": np.abs(diff).sum() / len(diff),
        "sd_diff": sd,
        "loa_lower": bias - 1.96 * sd,
        "loa_upper": bias + 1.96 * sd,
        "icc": icc_a1_by_hand(np.column_stack([pred, ref]))[0],
    }


def _assert_matches(stats: dict, expected: dict) -> None:
    for key, value in expected.items():
        tolerance = 2e-3 if key.startswith("loa") else 1e-9  # 1.96 against the exact normal quantile
        assert stats[key] == pytest.approx(value, abs=tolerance), key


def test_software_against_the_observers_mean_by_hand():
    ratings = pd.DataFrame(OBSERVERS)
    stats = software_agreement(pd.Series(SOFTWARE_VALUES), ratings)
    assert stats["n"] == 5
    assert stats["bias"] == pytest.approx(0.8) and stats["mae"] == pytest.approx(1.2)
    assert stats["sd_diff"] == pytest.approx(math.sqrt(1.7))  # squared deviations 6.8 over 4
    _assert_matches(stats, _by_hand(np.array(SOFTWARE_VALUES), np.array([10, 13, 15, 21, 18.0])))


def test_each_observer_against_the_mean_of_the_others_by_hand():
    ratings = pd.DataFrame(OBSERVERS)
    rows = {row["comparison"]: row for row in human_spread(ratings)}
    assert set(rows) == {
        "observer A vs the others",
        "observer B vs the others",
        "observer C vs the others",
        HUMANS,
    }
    maes = []
    for name in OBSERVERS:
        others = np.mean([OBSERVERS[o] for o in OBSERVERS if o != name], axis=0)
        expected = _by_hand(np.array(OBSERVERS[name]), others)
        _assert_matches(rows[f"observer {name} vs the others"], expected)
        maes.append(expected["mae"])
    assert rows[HUMANS]["mae"] == pytest.approx(np.mean(maes))
    assert rows[HUMANS]["n"] == 5


def test_one_observer_has_no_spread():
    assert human_spread(pd.DataFrame({"A": OBSERVERS["A"]})) == []


def test_names_match_by_the_longest_common_path_suffix():
    measured = [
        "/data/vastus_lateralis/x.png",
        "/data/gastrocnemius/x.png",
        "/data/vastus_lateralis/y.png",
        "/data/other/z.png",
    ]
    pairs, problems = match_names(
        measured, ["vastus_lateralis/x.png", "gastrocnemius\\x.png", "y.png", "w.png"]
    )
    assert pairs == {
        "vastus_lateralis/x.png": "/data/vastus_lateralis/x.png",
        "gastrocnemius\\x.png": "/data/gastrocnemius/x.png",
        "y.png": "/data/vastus_lateralis/y.png",
    }
    assert problems == {
        "w.png": "no measurement of this image",
        "/data/other/z.png": "not rated by the observers",
    }


def test_a_bare_name_of_two_measured_files_is_ambiguous():
    pairs, problems = match_names(["/a/x.png", "/b/x.png"], ["x.png"])
    assert pairs == {}
    assert problems["x.png"].startswith("ambiguous: matches /a/x.png, /b/x.png")
    assert problems["/a/x.png"] == problems["/b/x.png"] == "ambiguous: matched by x.png"


def test_frames_of_loops_match_and_the_rest_is_listed():
    rows = pd.DataFrame(
        {
            "image": ["/d/loop.mp4"] * 3 + ["/d/still.png"],
            "frame": [0.0, 5.0, 10.0, np.nan],
            "flags": "",
            "error": "",
            "units": "mm",
        }
    )
    ratings = pd.DataFrame(
        {"image": ["loop.mp4", "loop.mp4", "loop.mp4", "still.png"], "frame": [5, 7, np.nan, np.nan]}
    )
    matched, item_of, unmatched = match_items(rows, ratings)
    assert list(zip(matched["image"], matched["frame"].fillna(-1), strict=True)) == [
        ("/d/loop.mp4", 5.0),
        ("/d/still.png", -1),
    ]
    assert item_of == {("loop.mp4", 5): 0, ("still.png", None): 1}
    listed = {(t, i, None if pd.isna(f) else f): p for t, i, f, p in unmatched.itertuples(index=False)}
    assert listed == {
        ("observers", "loop.mp4", 7): "/d/loop.mp4: this frame was not measured",
        ("observers", "loop.mp4", None): "no frame given, but /d/loop.mp4 was measured as a loop",
        ("measurements", "/d/loop.mp4", 0): "not rated by the observers",
        ("measurements", "/d/loop.mp4", 10): "not rated by the observers",
    }


def _write_tables(
    folder: Path, units: str = "px", column: str = "thickness_px", n: int = 8, observers_suffix: str = ".csv"
) -> tuple[Path, Path]:
    """A measurement table of ``n`` images (one flagged, one failed) beside its overlays, and 3 observers."""
    rng = np.random.default_rng(0)
    truth_angle = np.linspace(10, 30, n)
    truth_thickness = np.linspace(150, 300, n)
    images = [f"/scans/vl/img_{i}.png" for i in range(n)]
    measured = pd.DataFrame(
        {
            "image": images,
            "thickness": truth_thickness + rng.normal(0, 3, n),
            "pennation_angle": truth_angle + rng.normal(0, 1, n),
            "units": units,
            "flags": [""] * (n - 2) + ["pennation angle 50° outside 4–45°", ""],
            "error": [""] * (n - 1) + ["no overlay: disk full"],
        }
    )
    measured.loc[n - 2, "pennation_angle"] = 50.0  # a large error, flagged
    measurements = folder / "results" / "measurements.csv"
    measurements.parent.mkdir()
    measured.to_csv(measurements, index=False)
    for i in range(n - 1):  # the failed one has no overlay
        Image.new("RGB", (64, 48), (i * 20, 0, 0)).save(measurements.parent / f"img_{i}_overlay.jpg")
    rows = []
    for observer, offset in (("TZ", 0.5), ("EM", -0.5), ("BH", 0.0)):
        for i in range(n):
            rows.append(
                {
                    "file": f"vl/img_{i}.png",
                    "observer": observer,
                    "pennation_angle": truth_angle[i] + offset + rng.normal(0, 0.5),
                    column: truth_thickness[i] + 2 * offset + rng.normal(0, 1),
                }
            )
    rows.append({"file": "gl/other.png", "observer": "TZ", "pennation_angle": 20.0, column: 200.0})
    observers = folder / f"observers{observers_suffix}"
    table = pd.DataFrame(rows)
    if observers_suffix == ".xlsx":
        table.to_excel(observers, index=False)
    else:
        table.to_csv(observers, index=False)
    return measurements, observers


def test_observer_pixels_against_measured_mm_need_a_spacing(tmp_path):
    measurements, observers = _write_tables(tmp_path, units="mm")
    maps = {"thickness": "thickness_px"}
    with pytest.raises(
        InputError, match=r"column thickness_px is in pixels but thickness is in mm; give --observer-spacing"
    ):
        compare(measurements, observers, maps=maps)
    result = compare(measurements, observers, maps=maps, observer_spacing=0.1)
    (thickness,) = result.measures
    assert thickness.units == "mm"
    raw = read_observers(observers).query("image == 'vl/img_3.png'").set_index("observer")["thickness_px"]
    assert thickness.ratings.loc[3].sort_index().tolist() == pytest.approx((0.1 * raw.sort_index()).tolist())


def test_units_that_cannot_match_are_one_line(tmp_path, capsys):
    measurements, observers = _write_tables(tmp_path, units="px", column="thickness_mm")
    argv = ["agreement", "--measurements", str(measurements), "--observers", str(observers)]
    assert main([*argv, "--map", "thickness=thickness_mm", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "thickness is in pixels but the observers' thickness_mm is in mm" in err
    assert (
        main(
            [
                *argv,
                "--map",
                "thickness=thickness_mm",
                "--observer-spacing",
                "0.1",
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 2
    )
    assert "not mm: --observer-spacing converts" in capsys.readouterr().err
    rows = pd.read_csv(measurements)
    rows.loc[0, "units"] = "mm"
    rows.to_csv(measurements, index=False)
    with pytest.raises(InputError, match=r"mix units \(7 in px, 1 in mm\)"):
        compare(measurements, observers, maps={"thickness": "thickness_mm"})
    assert (
        compare(measurements, observers, maps={"pennation_angle": "pennation_angle"}).measures[0].units == "°"
    )


def test_bad_input_is_one_line_naming_the_file(tmp_path, capsys):
    measurements, observers = _write_tables(tmp_path)
    argv = ["agreement", "--measurements", str(measurements), "--out", str(tmp_path / "a")]
    assert main([*argv, "--observers", str(observers), "--map", "thickness=thickness_cm"]) == 2
    assert f"{observers}: has no column 'thickness_cm'" in capsys.readouterr().err
    unrelated = tmp_path / "unrelated.csv"
    pd.DataFrame({"file": ["a.png"], "observer": ["TZ"], "thickness_px": [1.0]}).to_csv(
        unrelated, index=False
    )
    assert main([*argv, "--observers", str(unrelated), "--map", "thickness=thickness_px"]) == 2
    assert f"{unrelated}: no item matches one in {measurements}" in capsys.readouterr().err
    broken = tmp_path / "broken.xlsx"
    broken.write_text("not a workbook")
    assert main([*argv, "--observers", str(broken)]) == 2
    assert f"{broken}: cannot be read as a table" in capsys.readouterr().err


def test_command_writes_tables_report_and_summary(tmp_path, capsys):
    measurements, observers = _write_tables(tmp_path, observers_suffix=".xlsx")
    out = tmp_path / "agreement"
    argv = [
        "agreement",
        "--measurements",
        str(measurements),
        "--observers",
        str(observers),
        "--out",
        str(out),
    ]
    argv += ["--map", "thickness=thickness_px", "--map", "pennation_angle=pennation_angle", "--worst", "3"]
    assert main([*argv, "--bins", "pennation_angle=0,20,90"]) == 0
    printed = capsys.readouterr().out
    assert "1 item of the observers not matched" in printed
    assert "pennation_angle (°): software n=8" in printed and "thickness (px): software n=8" in printed
    assert "× the human MAE" in printed

    table = pd.read_csv(out / "agreement.csv")
    observer_rows = ["observer BH vs the others", "observer EM vs the others", "observer TZ vs the others"]
    for measure in ("thickness", "pennation_angle"):
        rows = table[table["measure"] == measure].set_index("comparison")
        assert list(rows.index) == [SOFTWARE, SOFTWARE_UNFLAGGED, *observer_rows, HUMANS]
        assert rows.loc[SOFTWARE, "n"] == 8 and rows.loc[SOFTWARE_UNFLAGGED, "n"] == 6
        assert rows.loc[HUMANS, "mae"] == pytest.approx(rows.loc[observer_rows, "mae"].mean(), rel=1e-5)
        ratio = rows.loc[SOFTWARE, "mae"] / rows.loc[SOFTWARE, "human_mae"]
        assert rows.loc[SOFTWARE, "mae_ratio"] == pytest.approx(ratio, rel=1e-5)
        assert rows.loc[SOFTWARE, "verdict"].startswith("pass" if ratio <= 2 else "fail")
    angle = table.set_index(["measure", "comparison"]).loc[("pennation_angle", SOFTWARE)]
    assert angle["verdict"].startswith("fail")  # the flagged 50° result

    by_range = pd.read_csv(out / "by_range.csv")
    assert list(by_range.loc[by_range["measure"] == "pennation_angle", "range"]) == ["0–20", "20–90"]
    assert len(by_range[by_range["measure"] == "thickness"]) == 4  # quartiles
    assert by_range.groupby("measure")["n"].sum().to_dict() == {"pennation_angle": 8, "thickness": 8}
    assert (by_range["n_humans"] > 0).all()

    worst = pd.read_csv(out / "worst.csv", keep_default_na=False)
    angles = worst[worst["measure"] == "pennation_angle"]
    assert len(angles) == 3 and angles["image"].iloc[0] == "/scans/vl/img_6.png"
    assert angles["flags"].iloc[0].startswith("pennation angle 50°")
    assert angles["overlay"].iloc[0] == str(measurements.parent / "img_6_overlay.jpg")
    assert {"observer TZ", "observer EM", "observer BH", "observers_mean", "difference"} <= set(worst.columns)

    flags = pd.read_csv(out / "flags.csv").set_index("measure")
    assert flags.loc["pennation_angle", "large_flagged"] >= 1
    matched = pd.read_csv(out / "matched.csv")
    assert len(matched) == 8 and {"thickness_by_TZ", "pennation_angle_observers_mean"} <= set(matched.columns)
    unmatched = pd.read_csv(out / "unmatched.csv")
    assert unmatched[["table", "image"]].values.tolist() == [["observers", "gl/other.png"]]

    report = (out / "report.html").read_text()
    for text in (
        "Agreement with observers",
        "software vs observers&#x27; mean",
        "Bland–Altman",
        "errors by range",
    ):
        assert text in report, text
    assert 'href="../results/img_6_overlay.jpg"' in report and "data:image/jpeg;base64" in report
    assert "gl/other.png" in report


def test_a_measure_without_values_is_reported_not_fatal(tmp_path, capsys):
    measurements, observers = _write_tables(tmp_path)
    rows = pd.read_csv(measurements)
    rows["thickness_vertical_at"] = np.nan  # measured without --thickness-at
    workbook = measurements.with_suffix(".xlsx")
    with pd.ExcelWriter(workbook) as book:  # as `sonomuscle measure` writes it: images, then a summary
        rows.to_excel(book, sheet_name="images", index=False)
        pd.DataFrame({"source": ["images"], "n": [8]}).to_excel(book, sheet_name="summary", index=False)
    out = tmp_path / "a"
    argv = ["agreement", "--measurements", str(workbook), "--observers", str(observers), "--out", str(out)]
    assert main([*argv, "--map", "thickness_vertical_at=thickness_px"]) == 0
    assert "none: 0 complete pairs" in capsys.readouterr().out
    table = pd.read_csv(out / "agreement.csv").set_index("comparison")
    assert table.loc[SOFTWARE, "n"] == 0 and table.loc[HUMANS, "n"] == 8
    assert pd.read_csv(out / "worst.csv").empty
    assert "no item has both a software value" in (out / "report.html").read_text()


def test_same_named_columns_are_compared_by_default(tmp_path):
    measurements, observers = _write_tables(tmp_path)
    result = compare(measurements, observers)
    assert [m.name for m in result.measures] == ["pennation_angle"]


def test_observers_spread_on_the_real_timtrack_images(timtrack_observers):
    """The README: the observers disagree by 1.3–1.9° on pennation and 1.5–6 px on thickness (MAE)."""
    observers = read_observers(timtrack_observers)
    for column, low, high in (("pennation_sup", 1.3, 1.9), ("thickness_px", 1.5, 6.0)):
        rows = human_spread(ratings_table(observers, column))
        assert len(rows) == 7  # 3 observers of each muscle, then their mean
        for row in rows:
            assert low <= row["mae"] <= high, (column, row["comparison"], row["mae"])
            assert row["n"] in (56, 153, 209)
