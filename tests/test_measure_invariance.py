"""The same real picture mirrored, scaled or cropped differently within its ultrasound area measures the same.

The shipped model runs on each variant through ``sonomuscle measure``, as a user runs it. Mirroring is
exact by construction (the network's logits are averaged over the picture and its mirror image); scaling
and cropping go through the network's fixed input size, the masks' resampling back and the fascicle
pieces, whose size thresholds follow the picture's size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sonomuscle.measure import measure

IMAGES = 12  # real DL_Track images with fascicle masks, every 18th
VARIANTS = {
    "mirror": (lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 1.0),
    "scale075": (
        lambda im: im.resize((round(im.width * 0.75), round(im.height * 0.75)), Image.BICUBIC),
        0.75,
    ),
    "scale150": (lambda im: im.resize((round(im.width * 1.5), round(im.height * 1.5)), Image.BICUBIC), 1.5),
    # a tenth off each side: the image centre, where thickness is measured, stays where it was
    "crop": (lambda im: im.crop((im.width // 10, 0, im.width - im.width // 10, im.height)), 1.0),
}


@pytest.fixture(scope="module")
def measured(dl_track_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("variants")
    for path in sorted((dl_track_dir / "fascicle" / "images").glob("*.png"))[::18][:IMAGES]:
        picture = Image.open(path).convert("L")
        picture.save(folder / f"{path.stem}__original.png")
        for name, (change, _) in VARIANTS.items():
            change(picture).save(folder / f"{path.stem}__{name}.png")
    rows = pd.read_csv(measure([folder], tmp_path_factory.mktemp("measured"), overlays=False))
    names = rows["image"].str.extract(r"([^/]+)__(\w+)\.png$")
    return rows.assign(case=names[0], variant=names[1]).set_index(["variant", "case"])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_pennation_and_thickness_do_not_depend_on_the_picture(measured, variant):
    original, changed = measured.loc["original"], measured.loc[variant]
    scale = VARIANTS[variant][1]
    angle = (changed["pennation_angle"] - original["pennation_angle"]).abs().dropna()
    thickness = (
        (changed["thickness"] / scale - original["thickness"]).abs() / original["thickness"]
    ).dropna()
    assert len(angle) >= IMAGES - 1 and len(thickness) >= IMAGES - 1
    assert np.median(angle) <= 1.0 and angle.quantile(0.75) <= 2.5, angle.round(2).to_dict()
    assert np.median(thickness) <= 0.02 and thickness.max() <= 0.05, thickness.round(3).to_dict()
    if variant == "mirror":  # exact by construction, but for resampling and skeletons on a mirrored grid
        assert angle.max() <= 0.5 and thickness.max() <= 0.005
        assert (changed["fascicle_direction"] != original["fascicle_direction"]).all()
