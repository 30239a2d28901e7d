"""The ultrasound picture is found inside a screen capture, and outputs go back to the capture's grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, CropForegroundd, Invertd, Resized

from sonomuscle.data.frames import FRAME_KEY
from sonomuscle.errors import InputError
from sonomuscle.transforms.crop import CropUltrasoundd, ultrasound_area
from sonomuscle.transforms.invert import ResampleInvertd
from sonomuscle.transforms.io import SetSpacingd

PICTURE = (slice(30, 130), slice(40, 100))  # (X, Y) of the B-mode picture in a 200 × 160 canvas


def _capture(rng: np.random.Generator) -> np.ndarray:
    """A speckled picture on a black canvas with scale ticks, a text label and a bright depth marker."""
    canvas = np.zeros((1, 200, 160), np.float32)
    canvas[(0, *PICTURE)] = rng.uniform(0.05, 1.0, size=(100, 60))
    canvas[0, 140, 40:100:10] = 1.0  # ticks beside the picture
    canvas[0, 5:13, 150:153] = 0.8  # a short text label in a corner (4 % of a column)
    canvas[0, 180, 2] = 1.0  # a lone marker
    return canvas


def test_crop_keeps_the_picture_and_drops_the_canvas():
    image = _capture(np.random.default_rng(0))
    mask = ultrasound_area(image)
    assert mask.shape == image.shape and mask.dtype == bool
    cropped = CropForegroundd("image", "image", select_fn=ultrasound_area)({"image": image})["image"]
    assert tuple(cropped.shape) == (1, 100, 60)
    np.testing.assert_array_equal(np.asarray(cropped), image[(0, *PICTURE)][None])


def test_a_dark_image_is_kept_whole():
    dark = np.full((1, 40, 30), 0.01, np.float32)
    assert ultrasound_area(dark).all()
    assert ultrasound_area(torch.as_tensor(dark)).all()


def test_outputs_are_padded_back_to_the_capture():
    image = MetaTensor(torch.as_tensor(_capture(np.random.default_rng(1))))
    preprocessing = Compose(
        [
            CropForegroundd("image", "image", select_fn=ultrasound_area),
            Resized("image", spatial_size=(50, 30), mode="area"),
        ]
    )
    data = preprocessing({"image": image})
    data["pred"] = torch.ones_like(data["image"])  # "structure everywhere" in network space
    restored = Invertd("pred", preprocessing, orig_keys="image", nearest_interp=True)(data)["pred"]
    assert tuple(restored.shape) == tuple(image.shape)
    inside = np.zeros(image.shape[1:], bool)
    inside[PICTURE] = True
    np.testing.assert_array_equal(np.asarray(restored[0]) > 0.5, inside)


def test_a_grey_interface_and_a_colour_bar_apart_from_the_picture_are_left_out():
    """A scanner screen capture: grey user interface, a lighter title bar, a grey-scale bar right of it."""
    rng = np.random.default_rng(2)
    capture = np.full((1, 200, 160), 0.22, np.float32)
    capture[0, :, :8] = 0.3  # title bar along the top
    capture[(0, *PICTURE)] = rng.uniform(0.0, 1.0, size=(100, 60))
    capture[0, 150:156, 50:90] = np.linspace(0, 1, 40)  # grey-scale bar, 20 columns right of the picture
    capture[0, 10:60:7, 120] = 1.0  # a dotted line in the interface
    cropped = CropUltrasoundd("image", "image")({"image": MetaTensor(torch.as_tensor(capture))})["image"]
    assert tuple(cropped.shape[1:2]) == (100,)  # columns: the picture's only
    assert cropped.shape[2] >= 60 and cropped.shape[2] <= 60 + 40  # rows: the picture (and the title bar)


def test_a_given_box_replaces_the_found_one_and_bad_boxes_name_the_file():
    image = MetaTensor(
        torch.as_tensor(_capture(np.random.default_rng(3))), meta={"filename_or_obj": "cap.png"}
    )
    crop = CropUltrasoundd("image", "image")
    cropped = crop({"image": image, "crop": [10, 20, 50, 30]})["image"]
    np.testing.assert_array_equal(np.asarray(cropped[0]), np.asarray(image[0, 10:60, 20:50]))
    for box in ([190, 0, 20, 10], [0, 0, 0, 10], [1, 2, 3]):
        with pytest.raises(InputError, match=r"cap\.png: crop box"):
            crop({"image": image, "crop": box})


def test_depth_is_measured_over_the_given_box():
    image = MetaTensor(
        torch.as_tensor(_capture(np.random.default_rng(4))), meta={"filename_or_obj": "cap.png"}
    )
    found = SetSpacingd("image")({"image": image.clone(), "depth": 30.0})["image"]
    boxed = SetSpacingd("image")({"image": image.clone(), "depth": 30.0, "crop": [0, 0, 200, 120]})["image"]
    assert found.meta["calibration"] == boxed.meta["calibration"] == "depth"
    assert float(found.pixdim[1]) == pytest.approx(30.0 / 60)  # the picture's 60 rows
    assert float(boxed.pixdim[1]) == pytest.approx(30.0 / 120)


def test_frames_of_a_loop_share_the_first_frames_box_and_still_images_get_their_own():
    crop = CropUltrasoundd("image", "image")
    first = _capture(np.random.default_rng(2))
    moved = np.roll(first, 20, axis=1)  # the same picture 20 px further right

    def cropped(array: np.ndarray, meta: dict) -> tuple[int, ...]:
        return tuple(crop({"image": MetaTensor(torch.as_tensor(array), meta=meta)})["image"].shape)

    loop = {"filename_or_obj": "loop.mp4"}
    assert cropped(first, {**loop, FRAME_KEY: 0}) == (1, 100, 60)
    frame = crop({"image": MetaTensor(torch.as_tensor(moved), meta={**loop, FRAME_KEY: 1})})["image"]
    np.testing.assert_array_equal(np.asarray(frame[0]), moved[(0, *PICTURE)])  # the first frame's box
    still = crop({"image": MetaTensor(torch.as_tensor(moved), meta={"filename_or_obj": "a.png"})})["image"]
    np.testing.assert_array_equal(np.asarray(still[0]), first[(0, *PICTURE)])  # found anew: moved with it


def test_masks_made_on_the_network_grid_come_back_centred_on_the_capture():
    """Crop 100 × 60, resize to 30 × 18 (3⅓×): grid columns 10–19 span capture columns 63–96, the half-way
    points between grid pixels included (torch's plain nearest would start at 64)."""
    image = MetaTensor(torch.as_tensor(_capture(np.random.default_rng(3))))
    preprocessing = Compose(
        [
            CropForegroundd("image", "image", select_fn=ultrasound_area),
            Resized("image", spatial_size=(30, 18), mode="area"),
        ]
    )
    data = preprocessing({"image": image})
    mask = torch.zeros_like(data["image"], dtype=torch.bool)
    mask[0, 10:20, :] = True
    data["pred"] = MetaTensor(mask, meta={**data["image"].meta, "confidence": [0.9]})
    restored = ResampleInvertd("pred", preprocessing, orig_keys="image")(data)
    rows = np.flatnonzero((np.asarray(restored["pred"][0]) >= 0.5).any(axis=1))
    np.testing.assert_array_equal(rows, np.arange(63, 97))
    assert restored["image"].applied_operations[-1]["extra_info"]["mode"] == "area"  # its record untouched
    assert restored["pred"].meta["confidence"] == [0.9]  # written by the postprocessing: kept
