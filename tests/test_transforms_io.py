"""SetSpacingd (datalist spacing into the affine) and ValidateInputd (early, file-named input errors)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, LoadImaged, Spacingd
from PIL import Image

from sonomuscle.data.readers import UltrasoundImageReader
from sonomuscle.errors import InputError
from sonomuscle.transforms.io import FitsInMemoryd, SetSpacingd, ValidateInputd, available_memory
from test_readers import write_dicom

PICTURE = np.arange(12 * 20, dtype=np.uint8).reshape(12, 20)  # rows (Y) × cols (X)


@pytest.fixture
def png(tmp_path):
    Image.fromarray(PICTURE).save(tmp_path / "img.png")
    Image.fromarray((PICTURE > 100).astype(np.uint8) * 255).save(tmp_path / "lab.png")
    return {"image": str(tmp_path / "img.png"), "label": str(tmp_path / "lab.png")}


def load(keys=("image", "label")):
    return LoadImaged(list(keys), reader=UltrasoundImageReader(), ensure_channel_first=True)


def test_set_spacing_puts_datalist_spacing_into_every_key(png):
    pipeline = Compose(
        [load(), SetSpacingd(["image", "label"]), Spacingd(["image", "label"], pixdim=(0.2, 0.2))]
    )
    out = pipeline({**png, "spacing": [0.1, 0.4]})
    for key in ("image", "label"):
        assert out[key].meta["spacing_known"] is True
        np.testing.assert_allclose(out[key].pixdim.numpy(), [0.2, 0.2])
    # MONAI spans pixel centres: 19 × 0.1 mm = 1.9 mm → 10 px at 0.2 mm; 11 × 0.4 mm = 4.4 mm → 23 px
    assert out["image"].shape == out["label"].shape == (1, 10, 23)


def test_set_spacing_without_entry_spacing_leaves_pixels(png):
    out = Compose([load(), SetSpacingd(["image", "label"])])(png)
    assert out["image"].meta["spacing_known"] is False
    np.testing.assert_array_equal(out["image"].affine.numpy(), np.eye(4))


def test_file_calibration_wins_over_datalist_spacing(tmp_path):
    path = write_dicom(tmp_path / "a.dcm", PICTURE, regions=[(0.01, 0.02)])
    out = Compose([load(["image"]), SetSpacingd("image")])({"image": str(path), "spacing": [5.0, 5.0]})
    np.testing.assert_allclose(out["image"].pixdim.numpy(), [0.1, 0.2])


def test_one_spacing_value_means_square_pixels(png):
    out = SetSpacingd("image")(load(["image"])({"image": png["image"], "spacing": [0.3]}))
    np.testing.assert_allclose(out["image"].pixdim.numpy(), [0.3, 0.3])


@pytest.mark.parametrize("spacing", [[0.1, 0.1, 0.1], [0.1, -1.0], [-0.1]])
def test_set_spacing_rejects_wrong_length_or_sign(png, spacing):
    with pytest.raises(InputError, match=r"img\.png: datalist spacing .* must be 2 positive values"):
        SetSpacingd("image")(load(["image"])({"image": png["image"], "spacing": spacing}))


def test_validate_passes_good_input_and_skips_absent_label_keys(png):
    data = load()(png)
    data["label"] = data["label"] / 255
    out = ValidateInputd("image", ["label", "fascicle"], spatial_dims=2, allowed_values=(0, 1))(data)
    assert out is data


def tensor(array, name: str) -> MetaTensor:
    return MetaTensor(torch.as_tensor(array, dtype=torch.float32), meta={"filename_or_obj": name})


@pytest.mark.parametrize(
    ("image", "label", "culprit", "problem"),
    [
        (np.zeros((1, 4, 4, 4)), np.zeros((1, 4, 4, 4)), "img.png", "expected a 2D image"),
        (np.full((1, 4, 4), np.nan), np.zeros((1, 4, 4)), "img.png", "'image' contains 16 NaN"),
        (
            np.zeros((1, 4, 4)),
            np.zeros((1, 4, 5)),
            "lab.png",
            r"spatial shape \(4, 5\) differs from image \(4, 4\)",
        ),
        (np.zeros((1, 4, 4)), np.full((1, 4, 4), 255.0), "lab.png", r"values \[255\] outside \[0, 1\]"),
    ],
)
def test_validate_names_the_bad_file(image, label, culprit, problem):
    data = {"image": tensor(image, "/d/img.png"), "label": tensor(label, "/d/lab.png")}
    with pytest.raises(InputError, match=problem) as err:
        ValidateInputd("image", "label", spatial_dims=2, allowed_values=(0, 1))(data)
    assert err.value.source == f"/d/{culprit}"


def _volume(shape, spacing_mm) -> MetaTensor:
    volume = MetaTensor(torch.zeros(1, *shape), affine=torch.diag(torch.tensor([*spacing_mm, 1.0])))
    volume.meta["filename_or_obj"] = "scan.nii.gz"
    return volume


def test_a_volume_that_resampled_would_not_fit_is_refused_before_resampling():
    """10×10×10 voxels of 1 mm at 0.5 mm: 8 000 voxels, 256 kB with 8 float32 copies."""
    check = FitsInMemoryd("image", pixdim=[0.5, 0.5, 0.5], max_bytes=300_000)
    fits = {"image": _volume((10, 10, 10), (1.0, 1.0, 1.0))}
    assert check(fits) is fits
    with pytest.raises(
        InputError, match=r"scan\.nii\.gz: 10×10×12 voxels of 1×1×1 mm become 20×20×24 at"
    ) as err:
        check({"image": _volume((10, 10, 12), (1.0, 1.0, 1.0))})
    assert "\n" not in str(err.value) and "voxel size" in str(err.value)


def test_memory_available_is_known_on_linux():
    assert available_memory() is None or available_memory() > 0
