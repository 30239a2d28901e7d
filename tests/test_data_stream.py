"""Inference cases streamed: bad files skipped with one line each, videos expanded into frames."""

from __future__ import annotations

import logging

import numpy as np
import torch
from PIL import Image

from sonomuscle.data.frames import FRAME_KEY, RATE_KEY, TIME_KEY
from sonomuscle.data.phantoms.architecture2d_sequence import write_video
from sonomuscle.data.stream import InferenceStream
from sonomuscle.transforms.io import LoadUltrasoundd, ValidateInputd


def _pipeline():
    load, check = LoadUltrasoundd("image"), ValidateInputd("image", spatial_dims=2)
    return lambda data: check(load(data))


def test_unreadable_and_wrong_files_are_skipped_and_the_rest_streamed(tmp_path, caplog):
    Image.fromarray(np.full((30, 40), 90, np.uint8)).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"garbage")
    Image.fromarray(np.full((30, 40), 90, np.uint8)).save(tmp_path / "also_good.png")
    cases = [
        {"image": str(tmp_path / name)} for name in ("good.png", "bad.png", "missing.png", "also_good.png")
    ]
    with caplog.at_level(logging.WARNING, logger="sonomuscle.data.stream"):
        items = [item for batch in InferenceStream(cases, _pipeline()) for item in batch]
    assert [str(item["image"].meta["filename_or_obj"]).split("/")[-1] for item in items] == [
        "good.png",
        "also_good.png",
    ]
    skipped = [r.getMessage() for r in caplog.records if r.name == "sonomuscle.data.stream"]
    assert len(skipped) == 2 and "bad.png" in skipped[0] and "missing.png" in skipped[1]
    assert all("\n" not in message for message in skipped)


def test_a_video_streams_every_nth_frame_with_index_time_and_rate(tmp_path):
    frames = [np.full((24, 16), 10 * i, np.uint8) for i in range(7)]
    write_video(tmp_path / "clip.mp4", frames, fps=25)
    cases = [{"image": str(tmp_path / "clip.mp4"), "spacing": [0.2, 0.2]}]
    items = [item for batch in InferenceStream(cases, _pipeline(), step=3) for item in batch]
    assert [item["image"].meta[FRAME_KEY] for item in items] == [0, 3, 6]
    assert [round(item["image"].meta[TIME_KEY], 3) for item in items] == [0.0, 0.12, 0.24]
    assert items[0]["image"].meta[RATE_KEY] == 25 / 3
    assert tuple(items[1]["image"].shape) == (1, 24, 16)  # channel first, (X, Y)
    assert torch.allclose(items[1]["image"], torch.full((1, 24, 16), 30.0))
    assert items[0]["spacing"] == [0.2, 0.2]  # the rest of the entry travels with each frame


def test_a_batch_holds_still_images_or_frames_of_one_loop_never_both(tmp_path):
    """Collation keeps the first item's metadata keys: a frame beside a still image would lose its index."""
    write_video(tmp_path / "a.mp4", [np.full((24, 16), 10 * i, np.uint8) for i in range(5)], fps=25)
    write_video(tmp_path / "b.mp4", [np.full((24, 16), 10 * i, np.uint8) for i in range(2)], fps=25)
    for name in ("x.png", "y.png", "z.png"):
        Image.fromarray(np.full((16, 24), 90, np.uint8)).save(tmp_path / name)
    names = ("x.png", "a.mp4", "b.mp4", "y.png", "z.png")
    stream = InferenceStream([{"image": str(tmp_path / n)} for n in names], _pipeline(), batch_size=3)

    def label(item) -> str:
        meta = item["image"].meta
        return str(meta["filename_or_obj"]).split("/")[-1] + (
            f"#{meta[FRAME_KEY]}" if FRAME_KEY in meta else ""
        )

    assert [[label(item) for item in batch] for batch in stream] == [
        ["x.png"],  # the first lists grow 1, 2, 4, … up to batch_size: the network starts at once
        ["a.mp4#0", "a.mp4#1"],
        ["a.mp4#2", "a.mp4#3", "a.mp4#4"],
        ["b.mp4#0", "b.mp4#1"],
        ["y.png", "z.png"],
    ]


def test_images_of_other_sizes_go_to_separate_batches(tmp_path):
    """An image kept at its own size (the picture overlays are drawn on) only batches with its size."""
    names = ("first.png", "a.png", "b.png", "c.png", "d.png")  # the first list holds one image
    for name, shape in zip(names, ((16, 24), (16, 24), (16, 24), (20, 24), (16, 24)), strict=True):
        Image.fromarray(np.full(shape, 90, np.uint8)).save(tmp_path / name)
    stream = InferenceStream([{"image": str(tmp_path / n)} for n in names], _pipeline(), batch_size=4)
    sizes = [[tuple(item["image"].shape[1:]) for item in batch] for batch in stream]
    assert sizes == [[(24, 16)], [(24, 16), (24, 16)], [(24, 20)], [(24, 16)]]
