"""Evaluation of image-level predictions: hand-counted metrics, pairing by path and name, what is written."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from sonomuscle.errors import InputError
from sonomuscle.evaluation.imagelevel import evaluate_predictions, image_level_outcome

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _classification(
    root: Path, names: list[str], truth: list[int], probabilities: list[list[float]], subjects=None
) -> tuple[Path, Path]:
    """A datalist of images ``img/<i>.png`` and predictions.csv: predicted class = most probable."""
    subjects = subjects or ["s01"] * len(truth)
    entries = [
        {"image": f"img/{i}.png", "label": t, "class": names[t], "subject": s}
        for i, (t, s) in enumerate(zip(truth, subjects, strict=True))
    ]
    datalist = root / "datalist.json"
    datalist.write_text(json.dumps({"class_names": names, "test": entries}), encoding="utf-8")
    rows = [
        {"image": str(root / f"img/{i}.png"), "class": names[int(np.argmax(p))]}
        | {f"probability_{n}": v for n, v in zip(names, p, strict=True)}
        for i, p in enumerate(probabilities)
    ]
    return _write_csv(root / "predictions.csv", rows), datalist


def _one_hot(indices: list[int], n: int, p: float = 0.9) -> list[list[float]]:
    """Probabilities putting ``p`` on each given class and the rest evenly on the others."""
    return [[p if c == i else (1 - p) / (n - 1) for c in range(n)] for i in indices]


def _regression(root: Path, truth: list[list[float]], predicted: list[list[float]], subjects: list[str]):
    targets = ["angle", "activation"]
    entries = [
        {"image": f"img/{i}.png", "label": t, "subject": s}
        for i, (t, s) in enumerate(zip(truth, subjects, strict=True))
    ]
    datalist = root / "datalist.json"
    datalist.write_text(json.dumps({"targets": targets, "test": entries}), encoding="utf-8")
    rows = [
        {"image": f"img/{i}.png"} | dict(zip(targets, p, strict=True)) | {"error": ""}
        for i, p in enumerate(predicted)
    ]
    return _write_csv(root / "predictions.csv", rows), datalist


def _strict_json(path: Path) -> dict:
    """summary.json, refusing NaN and infinities (not JSON)."""

    def refuse(constant: str):
        raise AssertionError(f"{path} holds {constant}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def _assert_outputs(out: Path, figure: str) -> None:
    for name in ("cases.csv", "summary.json", "report.html", figure):
        assert (out / name).stat().st_size > 0, name
    assert (out / figure).read_bytes().startswith(PNG_MAGIC)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in page and "<table" in page
    assert not list(out.glob(".tmp-*"))  # atomic writers left nothing behind


def test_perfect_classification(tmp_path):
    names = ["rest", "low", "medium", "high", "maximal"]
    truth = [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    predictions, datalist = _classification(tmp_path, names, truth, _one_hot(truth, 5))
    summary = evaluate_predictions(predictions, datalist, "test", tmp_path / "out")

    assert summary["accuracy"] == 1 and summary["balanced_accuracy"] == 1 and summary["macro_auc"] == 1
    assert summary["confusion_matrix"] == (2 * np.eye(5, dtype=int)).tolist()
    assert summary["n_images"] == 10 and summary["without_prediction"] == summary["without_case"] == []
    _assert_outputs(tmp_path / "out", "confusion_matrix.png")
    assert _strict_json(tmp_path / "out" / "summary.json")["class_names"] == names
    with (tmp_path / "out" / "cases.csv").open(encoding="utf-8") as file:
        cases = list(csv.DictReader(file))
    assert list(cases[0])[:5] == ["image", "subject", "true", "predicted", "correct"]
    assert cases[3]["image"] == "img/3.png" and cases[3]["true"] == cases[3]["predicted"] == "high"
    assert float(cases[3]["probability_high"]) == pytest.approx(0.9)


def test_known_confusion_imbalanced(tmp_path):
    """6 a, 2 b, 2 c; one a called b, one b called a: confusion [[5, 1, 0], [1, 1, 0], [0, 0, 2]]."""
    names = ["a", "b", "c"]
    truth = [0, 0, 0, 0, 0, 0, 1, 1, 2, 2]
    called = [0, 0, 0, 0, 0, 1, 0, 1, 2, 2]
    predictions, datalist = _classification(tmp_path, names, truth, _one_hot(called, 3))
    summary = evaluate_predictions(predictions, datalist, "test", tmp_path / "out")

    assert summary["confusion_matrix"] == [[5, 1, 0], [1, 1, 0], [0, 0, 2]]
    assert summary["accuracy"] == pytest.approx(8 / 10)
    assert summary["balanced_accuracy"] == pytest.approx((5 / 6 + 1 / 2 + 1) / 3)  # 7/9, not 0.8
    assert summary["classes"]["a"] == pytest.approx(
        {"n_true": 6, "n_predicted": 6, "recall": 5 / 6, "precision": 5 / 6}
    )
    assert summary["classes"]["b"]["recall"] == pytest.approx(0.5)
    assert summary["classes"]["b"]["precision"] == pytest.approx(0.5)


def test_majority_guess_balanced_accuracy_and_undefined_precision(tmp_path):
    """9 a and 1 b, all called a: accuracy 0.9 but balanced accuracy 0.5; b's precision is undefined."""
    truth = [0] * 9 + [1]
    predictions, datalist = _classification(tmp_path, ["a", "b"], truth, _one_hot([0] * 10, 2))
    summary = evaluate_predictions(predictions, datalist, "test", tmp_path / "out")

    assert summary["accuracy"] == pytest.approx(0.9)
    assert summary["balanced_accuracy"] == pytest.approx(0.5)
    assert summary["classes"]["b"] == {"n_true": 1, "n_predicted": 0, "recall": 0.0, "precision": None}
    assert _strict_json(tmp_path / "out" / "summary.json")["classes"]["b"]["precision"] is None


def test_auc_by_ranks(tmp_path):
    """Scores of b: positives 0.8, 0.4; negatives 0.1, 0.6 → 3 of 4 pairs ranked right, AUC 0.75."""
    p_b = [0.1, 0.6, 0.8, 0.4]
    predictions, datalist = _classification(tmp_path, ["a", "b"], [0, 0, 1, 1], [[1 - p, p] for p in p_b])
    assert evaluate_predictions(predictions, datalist, "test", tmp_path / "out")[
        "macro_auc"
    ] == pytest.approx(0.75)


def test_auc_over_classes_present_in_truth(tmp_path):
    """c never occurs: macro AUC = mean of a (1.0: 0.7, 0.3 above 0.1, 0.2) and b (0.75) = 0.875."""
    probabilities = [[0.7, 0.1, 0.2], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1], [0.2, 0.4, 0.4]]
    predictions, datalist = _classification(tmp_path, ["a", "b", "c"], [0, 0, 1, 1], probabilities)
    summary = evaluate_predictions(predictions, datalist, "test", tmp_path / "out")
    assert summary["macro_auc"] == pytest.approx(0.875)
    assert summary["classes"]["c"]["recall"] is None


def test_one_class_in_truth_has_no_auc(tmp_path):
    predictions, datalist = _classification(tmp_path, ["a", "b"], [0, 0, 0], _one_hot([0, 1, 0], 2))
    summary = evaluate_predictions(predictions, datalist, "test", tmp_path / "out")
    assert summary["macro_auc"] is None and summary["balanced_accuracy"] == pytest.approx(2 / 3)
    assert "macro AUC –" in image_level_outcome(summary, tmp_path / "out")


def test_perfect_regression(tmp_path):
    truth = [[10.0, 0.1], [20.0, 0.3], [35.0, 0.2], [50.0, 0.6]]
    predictions, datalist = _regression(tmp_path, truth, truth, ["s01", "s01", "s02", "s02"])
    summary = evaluate_predictions(predictions, datalist, "test", tmp_path / "out")
    for stats in summary["targets"].values():
        assert stats["rmse"] == 0 and stats["bias"] == 0 and stats["n"] == 4
        assert stats["r"] == pytest.approx(1)
    _assert_outputs(tmp_path / "out", "predicted_vs_true.png")


def test_regression_known_offsets(tmp_path):
    """angle off by +1, −1, +3, +1: bias 1, MAE 1.5, RMSE √3; activation off by +0.05: bias = RMSE = 0.05."""
    truth = [[10.0, 0.1], [20.0, 0.2], [30.0, 0.3], [40.0, 0.4]]
    offsets = [1.0, -1.0, 3.0, 1.0]
    predicted = [[a + d, b + 0.05] for (a, b), d in zip(truth, offsets, strict=True)]
    predictions, datalist = _regression(tmp_path, truth, predicted, ["s01", "s01", "s02", "s02"])
    summary = evaluate_predictions(predictions, datalist, "test", tmp_path / "out")

    angle, activation = summary["targets"]["angle"], summary["targets"]["activation"]
    sd = float(np.std([10, 20, 30, 40], ddof=1))
    assert angle["bias"] == pytest.approx(1) and angle["mae"] == pytest.approx(1.5)
    assert angle["rmse"] == pytest.approx(math.sqrt(3))
    assert angle["sd_truth"] == pytest.approx(sd) and angle["rmse_sd_ratio"] == pytest.approx(
        math.sqrt(3) / sd
    )
    assert activation["bias"] == pytest.approx(0.05) and activation["rmse"] == pytest.approx(0.05)
    assert activation["r"] == pytest.approx(1) and activation["r_p"] < 0.01
    # per subject: s01 off by 1, −1 → RMSE 1; s02 off by 3, 1 → RMSE √5
    assert summary["per_subject"]["s01"]["n"] == 2
    assert summary["per_subject"]["s01"]["rmse"]["angle"] == pytest.approx(1)
    assert summary["per_subject"]["s02"]["rmse"]["angle"] == pytest.approx(math.sqrt(5))
    with (tmp_path / "out" / "cases.csv").open(encoding="utf-8") as file:
        first = next(csv.DictReader(file))
    assert float(first["angle_difference"]) == pytest.approx(1) and first["subject"] == "s01"
    line = image_level_outcome(summary, tmp_path / "out")
    assert line == (
        f"test: 4 images, angle RMSE 1.73 (SD {sd:.3g}), activation RMSE 0.05 (SD 0.129); "
        f"report: {tmp_path / 'out' / 'report.html'}"
    )


def test_failed_rows_counted_and_left_out(tmp_path):
    truth = [[10.0, 0.1], [20.0, 0.2], [30.0, 0.3], [40.0, 0.4]]
    predicted = [list(t) for t in truth]
    predictions, datalist = _regression(tmp_path, truth, predicted, ["s01"] * 4)
    text = predictions.read_text(encoding="utf-8").replace("img/3.png,40.0,0.4,", "img/3.png,,,unreadable")
    predictions.write_text(text, encoding="utf-8")
    summary = evaluate_predictions(predictions, datalist, "test", tmp_path / "out")
    assert summary["n_images"] == 3 and summary["n_failed"] == 1
    assert summary["failed"] == [{"image": "img/3.png", "error": "unreadable"}]
    assert summary["targets"]["angle"]["n"] == 3
    assert "(1 failed)" in image_level_outcome(summary, tmp_path / "out")


def test_unpaired_listed_by_name(tmp_path, capsys):
    """Pairing on the absolute path, then on a unique file name; what is left is named, not fatal."""
    names = ["a", "b"]
    (tmp_path / "s01").mkdir()  # MONAI would turn the subject "s01" into this folder's path
    predictions, datalist = _classification(tmp_path, names, [0, 1, 0, 1], _one_hot([0, 1, 0, 1], 2))
    rows = list(csv.DictReader(predictions.open(encoding="utf-8")))
    rows[1]["image"] = "/elsewhere/copies/1.png"  # pairs on its file name
    rows[3]["image"] = "img/9.png"  # no such test image; img/3.png has no prediction
    _write_csv(predictions, rows)
    summary = evaluate_predictions(predictions, datalist, "test", tmp_path / "out")

    assert summary["n_images"] == 3
    assert summary["without_prediction"] == ["img/3.png"]
    assert summary["without_case"] == ["img/9.png"]
    err = capsys.readouterr().err
    assert "1 test image without a prediction: img/3.png" in err and "img/9.png" in err
    with (tmp_path / "out" / "cases.csv").open(encoding="utf-8") as file:
        assert {row["subject"] for row in csv.DictReader(file)} == {"s01"}
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "img/3.png" in page and "img/9.png" in page
    assert "(1 without a prediction, 1 prediction of no test image)" in image_level_outcome(summary, "o")


def test_nothing_pairs_is_one_line_error(tmp_path):
    predictions, datalist = _classification(tmp_path, ["a", "b"], [0, 1], _one_hot([0, 1], 2))
    _write_csv(predictions, [{"image": "x.png", "class": "a", "probability_a": 1, "probability_b": 0}])
    with pytest.raises(InputError) as caught:
        evaluate_predictions(predictions, datalist, "test", tmp_path / "out")
    message = str(caught.value)
    assert str(predictions) in message and str(datalist) in message and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_missing_probability_column_is_named(tmp_path):
    predictions, datalist = _classification(tmp_path, ["a", "b"], [0, 1], _one_hot([0, 1], 2))
    _write_csv(predictions, [{"image": "img/0.png", "class": "a", "probability_a": 1}])
    with pytest.raises(InputError, match="no column probability_b"):
        evaluate_predictions(predictions, datalist, "test", tmp_path / "out")
