"""The ultrasound picture is found inside a screen capture, and outputs go back to the capture's grid."""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, CropForegroundd, Invertd, Resized

from sonomuscle.transforms.crop import ultrasound_area

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
