"""ArchitectureMeasurements, TrainedChannels and LearningCurve on real ignite engines: CSV rows, units,
skips, untrained channels, partial references, resume."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from monai.transforms import Compose, SaveImaged
from PIL import Image

from sonomuscle.data.frames import FRAME_KEY, RATE_KEY, TIME_KEY
from sonomuscle.handlers.architecture import ArchitectureMeasurements
from sonomuscle.handlers.learning_curve import LearningCurve
from sonomuscle.handlers.overlays import (
    EDGE_COLOUR,
    FASCICLE_COLOUR,
    MeasuredFigure,
    draw_measures,
    measured_figure,
    overlay_picture,
)
from sonomuscle.handlers.trained_channels import TrainedChannels
from sonomuscle.measures.architecture import measure_architecture

SPACING = (0.2, 0.25)


def _masks(n: int = 120) -> np.ndarray:
    """(2, X, Y): flat aponeuroses at depth 10–13 and 70–74 px, three fascicles at ~20° to them."""
    masks = np.zeros((2, n, n), np.uint8)
    masks[0, :, 10:14] = 1
    masks[0, :, 70:75] = 1
    for x0 in (10, 45, 80):
        for t in range(0, 90):
            x, y = x0 + t, round(68 - t * np.tan(np.deg2rad(20)) * SPACING[0] / SPACING[1])
            if 16 <= y <= 68 and x < n:
                masks[1, x, y] = 1
    return masks


def _pred(path, spacing_known: bool, masks: np.ndarray | None = None) -> MetaTensor:
    masks = _masks() if masks is None else masks
    affine = np.diag([*SPACING, 1.0, 1.0])
    meta = {"filename_or_obj": str(path), "spacing_known": spacing_known, "affine": torch.as_tensor(affine)}
    return MetaTensor(torch.as_tensor(masks, dtype=torch.float32), affine=torch.as_tensor(affine), meta=meta)


def _run(handler, outputs: list[list[dict]]) -> None:
    engine = Engine(lambda e, batch: batch)
    handler.attach(engine)
    engine.run(outputs, max_epochs=1)


def test_measurements_match_the_measure_in_mm_and_px_and_survive_a_bad_case(tmp_path):
    image = tmp_path / "img.png"
    Image.fromarray(np.full((120, 120), 80, np.uint8)).save(image)
    bad = _pred(tmp_path / "bad.png", True, np.zeros((2, 120, 120, 3), np.uint8))  # 3D: not measurable
    handler = ArchitectureMeasurements(tmp_path / "out", overlay_dir=tmp_path / "out")
    _run(handler, [[{"pred": _pred(image, True)}], [{"pred": bad}], [{"pred": _pred(image, False)}]])

    rows = pd.read_csv(tmp_path / "out" / "measurements.csv")
    assert list(rows["units"].fillna("")) == ["mm", "", "px"]
    expected = measure_architecture(_masks()[0], _masks()[1], SPACING)
    assert rows.loc[0, "thickness"] == pytest.approx(expected.thickness)
    assert rows.loc[0, "pennation_angle"] == pytest.approx(20.0, abs=1.5)
    assert rows.loc[0, "n_fascicles"] == 3
    assert rows.loc[0, "thickness"] == pytest.approx((70 - 14) * SPACING[1], abs=0.3)
    assert rows.loc[2, "thickness"] == pytest.approx(70 - 14, abs=1.5)  # pixels without spacing
    assert rows.loc[1, "image"].endswith("bad.png") and isinstance(rows.loc[1, "error"], str)
    assert np.isnan(rows.loc[1, "thickness"]) and rows["error"].isna()[[0, 2]].all()
    overlay = np.asarray(Image.open(tmp_path / "out" / "img_overlay.jpg"))
    assert overlay.shape == (120, 120, 3) and (overlay[12, :, 0] > overlay[12, :, 1]).all()  # rows = depth


def test_reference_errors_are_model_minus_reference(tmp_path):
    reference = _masks()
    pred = reference.copy()
    pred[0, :, 70] = 0  # deep aponeurosis one pixel thinner → muscle 1 px (0.25 mm) thicker
    handler = ArchitectureMeasurements(tmp_path, reference_key="label")
    _run(handler, [[{"pred": _pred("a.png", True, pred), "label": _pred("a.png", True, reference)}]])
    row = pd.read_csv(tmp_path / "measurements.csv").iloc[0]
    assert row["error_thickness"] == pytest.approx(row["thickness"] - row["ref_thickness"])
    assert row["error_thickness"] == pytest.approx(SPACING[1], abs=0.05)


def test_learning_curve_keeps_earlier_epochs_on_resume(tmp_path):
    losses = [[{"loss": torch.tensor(v)}] for v in (1.0, 3.0)]
    curve = LearningCurve(tmp_path)
    engine = Engine(lambda e, batch: batch)
    curve.attach(engine)
    engine.run(losses, max_epochs=2)
    assert list(pd.read_csv(tmp_path / "learning_curve.csv")["train_loss"]) == [2.0, 2.0]

    resumed = Engine(lambda e, batch: [{"loss": batch[0]["loss"] * 2}])
    LearningCurve(tmp_path).attach(resumed)
    resumed.load_state_dict({"epoch": 2, "max_epochs": 3, "epoch_length": 2})
    resumed.run(losses, max_epochs=3)
    assert list(pd.read_csv(tmp_path / "learning_curve.csv")["train_loss"]) == [2.0, 2.0, 4.0]


def test_trained_channels_records_annotated_kinds_and_survives_a_checkpoint():
    record = TrainedChannels(["aponeurosis", "fascicle"])
    engine = Engine(lambda e, batch: None)
    record.attach(engine)
    label = torch.zeros(2, 2, 8, 8)
    label[:, 1] = -1  # aponeurosis-only batches
    engine.run([{"label": MetaTensor(label)}] * 3, max_epochs=1)  # MONAI batches carry MetaTensors
    assert record.untrained() == ["fascicle"]

    restored = TrainedChannels(["aponeurosis", "fascicle"])
    restored.load_state_dict(torch.load(_saved(record.state_dict()), weights_only=True))
    assert restored.untrained() == ["fascicle"]
    with pytest.raises(ValueError, match="records 2 channels, the bundle has 3"):
        TrainedChannels(["a", "b", "c"]).load_state_dict(record.state_dict())


def _saved(state: dict) -> io.BytesIO:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


def test_measures_of_an_untrained_fascicle_channel_are_left_empty_with_the_reason(tmp_path):
    record = TrainedChannels(["aponeurosis", "fascicle"])
    record.trained[0] = True
    handler = ArchitectureMeasurements(tmp_path, trained_channels=record)
    _run(handler, [[{"pred": _pred(tmp_path / "a.png", True)}]])

    row = pd.read_csv(tmp_path / "measurements.csv").iloc[0]
    assert row["thickness"] == pytest.approx((70 - 14) * SPACING[1], abs=0.3)
    assert np.isnan(row["pennation_angle"]) and np.isnan(row["fascicle_length"])
    assert "fascicle channel never trained" in row["qc"]


def test_unannotated_reference_aponeurosis_is_taken_from_the_prediction_for_fascicle_angles(tmp_path):
    pred = _pred(tmp_path / "a.png", True)
    reference = _masks().astype(np.float32)
    reference[0] = -1  # a fascicle-only image: aponeuroses not annotated
    reference[1] = 0
    for x in range(20, 100):  # one reference fascicle at 30° to the (predicted) deep aponeurosis
        y = round(68 - (x - 20) * np.tan(np.deg2rad(30)) * SPACING[0] / SPACING[1])
        if y >= 16:
            reference[1, x, y] = 1
    handler = ArchitectureMeasurements(tmp_path, reference_key="reference")
    _run(handler, [[{"pred": pred, "reference": torch.as_tensor(reference)}]])

    row = pd.read_csv(tmp_path / "measurements.csv").iloc[0]
    assert row["ref_source"] == "aponeurosis from prediction"
    assert row["ref_pennation_angle"] == pytest.approx(30.0, abs=1.5)
    assert row["error_pennation_angle"] == pytest.approx(-10.0, abs=2.0)
    assert np.isnan(row["ref_thickness"]) and np.isnan(row["error_thickness"])  # not compared with itself


def test_overlays_show_the_fitted_lines_and_the_values():
    masks = _masks(240)
    result = measure_architecture(masks[0], masks[1], None)
    row = {**result.as_row(), "thickness": result.thickness}
    picture = overlay_picture(np.full((240, 240), 80.0), masks.astype(bool))
    drawn = draw_measures(picture, measured_figure(result, row, None, width=240))
    edge_rows = drawn[[13, 14, 69, 70], 100]  # the deep edge of the superficial band, the top of the deep one
    assert sum(tuple(pixel) == EDGE_COLOUR for pixel in edge_rows) >= 2
    assert (np.all(drawn == FASCICLE_COLOUR, axis=-1)).sum() > 100  # the three fascicles, L_d to L_s
    caption = drawn[200:, :120]
    assert (caption.min(axis=-1) > 200).any() and (caption.max(axis=-1) < 30).any()  # white on black
    untrained = {**row, "pennation_angle": float("nan")}  # a fascicle channel never trained: no lines
    assert measured_figure(result, untrained, None, width=240).fascicles == []


def test_lines_far_outside_the_picture_are_clipped_to_it():
    """A nearly flat fascicle meets the aponeuroses far away: only its part in the picture is drawn."""
    figure = MeasuredFigure(edges=[], fascicles=[((-5e5, 10.0), (5e5, 30.0))], caption="x")
    drawn = draw_measures(np.zeros((60, 80, 3), np.uint8), figure)
    on_line = np.all(drawn == FASCICLE_COLOUR, axis=-1)
    assert on_line[20, :].sum() >= 70  # across the whole width, at the middle height


def test_measuring_in_the_background_gives_the_same_rows_files_and_threads(tmp_path):
    """Stills and frames of a loop whose file is gone: the pictures come with the batch, nothing is read."""
    threads = torch.get_num_threads()

    def batches(folder) -> list[list[dict]]:
        still = {"pred": _pred(folder / "still.png", True), "picture": torch.full((1, 120, 120), 200.0)}
        frames = []
        for index in range(3):
            pred = _pred(folder / "gone.mp4", True)
            pred.meta.update({FRAME_KEY: index, TIME_KEY: index / 25, RATE_KEY: 25.0})
            frames.append({"pred": pred, "picture": torch.full((1, 120, 120), 40.0 * index)})
        return [[still], frames[:2], frames[2:]]

    tables = {}
    for background in (False, True):
        out = tmp_path / str(background)
        out.mkdir()
        writer = Compose(
            [
                SaveImaged(f"pred_{name}", output_dir=out, output_postfix=name, output_ext=".png",
                           separate_folder=False, output_dtype=np.uint8, scale=255, resample=False, print_log=False)
                for name in ("aponeurosis", "fascicle")
            ]
        )  # fmt: skip
        handler = ArchitectureMeasurements(
            out, overlay_dir=out, picture_key="picture", mask_writer=writer, background=background
        )
        _run(handler, batches(out))
        assert torch.get_num_threads() == threads  # the network has its core back
        tables[background] = pd.read_csv(out / "measurements.csv")
        assert sorted(p.name for p in out.iterdir() if p.suffix != ".csv") == [
            "gone_overlay.mp4",
            "still_aponeurosis.png",
            "still_fascicle.png",
            "still_overlay.jpg",
        ]
        overlay = np.asarray(Image.open(out / "still_overlay.jpg"))
        assert abs(int(overlay[40, 60, 0]) - 200) < 8  # drawn on the picture given, not on the file
    pd.testing.assert_frame_equal(tables[False].drop(columns="image"), tables[True].drop(columns="image"))
    assert list(tables[True]["frame"].fillna(-1)) == [-1, 0, 1, 2]


def test_a_failing_run_keeps_the_rows_measured_in_the_background(tmp_path):
    threads = torch.get_num_threads()
    handler = ArchitectureMeasurements(tmp_path, background=True)

    def step(engine, batch):
        if engine.state.iteration == 3:
            raise RuntimeError("the network failed")
        return batch

    engine = Engine(step)
    handler.attach(engine)
    batches = [[{"pred": _pred(tmp_path / f"{i}.png", True)}] for i in range(4)]
    with pytest.raises(RuntimeError, match="the network failed"):
        engine.run(batches, max_epochs=1)
    rows = pd.read_csv(tmp_path / "measurements.csv")
    assert [p.split("/")[-1] for p in rows["image"]] == ["0.png", "1.png"]  # the second was still in flight
    assert torch.get_num_threads() == threads
