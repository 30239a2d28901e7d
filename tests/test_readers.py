"""Readers: every format in (X, Y[, Z]) order, its spacing in mm, mask rules, and one-line errors."""

from __future__ import annotations

import itk
import nibabel as nib
import nrrd
import numpy as np
import pytest
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    Invertd,
    LoadImage,
    LoadImaged,
    Resized,
    SaveImaged,
)
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

from sonomuscle.data.readers import UltrasoundImageReader, load_image
from sonomuscle.errors import InputError

# rows × cols as a picture is stored; asymmetric so any transpose or flip shows
PICTURE = np.array([[0, 10, 20, 30, 40, 50, 60], [1, 2, 3, 4, 5, 6, 7], [9, 8, 7, 6, 5, 4, 200]], np.uint8)
LUMA = np.array([0.299, 0.587, 0.114])


def write_dicom(path, pixels, *, rgb=False, regions=(), pixel_spacing=None):
    """A minimal ultrasound DICOM; ``regions`` are (PhysicalDeltaX, PhysicalDeltaY) in cm."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    if pixels.ndim == (4 if rgb else 3):
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if rgb else pixels.shape[-2:]
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = "RGB" if rgb else "MONOCHROME2"
    if rgb:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.SequenceOfUltrasoundRegions = []
    for dx, dy in regions:
        region = Dataset()
        region.RegionSpatialFormat = 1
        region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3
        region.PhysicalDeltaX, region.PhysicalDeltaY = dx, dy
        ds.SequenceOfUltrasoundRegions.append(region)
    if pixel_spacing is not None:
        ds.PixelSpacing = list(pixel_spacing)
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def rgb_picture() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (*PICTURE.shape, 3), dtype=np.uint8)


# --- 2D raster formats ---------------------------------------------------------------------------------


def test_png_loads_transposed_to_x_y(tmp_path):
    Image.fromarray(PICTURE).save(tmp_path / "a.png")
    array, spacing = load_image(tmp_path / "a.png")
    assert array.dtype == np.float32 and array.shape == (7, 3)
    np.testing.assert_array_equal(array, PICTURE.T)
    assert array[6, 2] == 200  # right edge (x = 6), deepest row (y = 2)
    assert spacing is None


@pytest.mark.parametrize(
    ("name", "mode", "tolerance"),
    [("rgb.png", "RGB", 0.5), ("rgba.png", "RGBA", 0.5), ("rgb.tif", "RGB", 0.5), ("rgb.bmp", "RGB", 0.5)],
)
def test_colour_becomes_luma_grey(tmp_path, name, mode, tolerance):
    rgb = rgb_picture()
    Image.fromarray(rgb).convert(mode).save(tmp_path / name)
    array, _ = load_image(tmp_path / name)
    np.testing.assert_allclose(array, (rgb @ LUMA).T, atol=tolerance)


def test_jpeg_is_grey_within_compression_error(tmp_path):
    smooth = np.add.outer(np.arange(32) * 4, np.arange(48) * 2).astype(np.uint8)  # rows × cols
    Image.fromarray(np.dstack([smooth] * 3)).save(tmp_path / "a.jpg", quality=95)
    array, _ = load_image(tmp_path / "a.jpg")
    assert array.shape == (48, 32)
    assert np.abs(array - smooth.T).mean() < 2


def test_palette_png_gives_colours_not_indices(tmp_path):
    image = Image.fromarray(PICTURE).convert("P")  # grey palette: index ≠ value in general
    image.save(tmp_path / "p.png")
    array, _ = load_image(tmp_path / "p.png")
    np.testing.assert_allclose(array, PICTURE.T, atol=0.5)


def test_16_bit_png_keeps_full_range(tmp_path):
    deep = PICTURE.astype(np.uint16) * 300  # up to 60000
    Image.fromarray(deep).save(tmp_path / "d.png")
    array, _ = load_image(tmp_path / "d.png")
    np.testing.assert_array_equal(array, deep.T.astype(np.float32))


# --- masks -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("high", [1, 255])
def test_mask_0_1_and_0_255_become_uint8_0_1(tmp_path, high):
    mask = (PICTURE > 5).astype(np.uint8) * high
    Image.fromarray(mask).save(tmp_path / "m.png")
    array, _ = load_image(tmp_path / "m.png", mask=True)
    assert array.dtype == np.uint8
    np.testing.assert_array_equal(array, (PICTURE.T > 5).astype(np.uint8))


def test_palette_mask_uses_indices(tmp_path):
    image = Image.fromarray((PICTURE > 5).astype(np.uint8), mode="L").convert("P")
    image.putpalette([0, 0, 0, 255, 0, 0])  # index 1 drawn red: its grey value would be 76
    image.save(tmp_path / "m.png")
    array, _ = load_image(tmp_path / "m.png", mask=True)
    np.testing.assert_array_equal(array, (PICTURE.T > 5).astype(np.uint8))


def test_mask_with_other_values_names_file_and_values(tmp_path):
    Image.fromarray(PICTURE).save(tmp_path / "bad.png")
    with pytest.raises(InputError, match=r"bad\.png: mask values must be 0/1 or 0/255, found 0, 1, 2") as err:
        load_image(tmp_path / "bad.png", mask=True)
    assert "\n" not in str(err.value)


def test_float_mask_with_fractions_is_rejected(tmp_path):
    nib.save(nib.Nifti1Image(np.full((4, 4, 2), 0.5, np.float32), np.eye(4)), tmp_path / "m.nii.gz")
    with pytest.raises(InputError, match=r"m\.nii\.gz: mask values .* found 0\.5"):
        load_image(tmp_path / "m.nii.gz", mask=True)


# --- label maps ------------------------------------------------------------------------------------------

LABELS = np.zeros((32, 48), np.uint8)
LABELS[4:12, 5:40] = 1
LABELS[16:28, 10:30] = 2
VOC_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0]  # PASCAL VOC: 1 dark red, 2 dark green


def _saved(tmp_path, image: Image.Image, name: str = "l.png"):
    image.save(tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize(
    "label_map",
    [
        pytest.param(lambda a: _voc(a), id="palette"),
        pytest.param(lambda a: Image.fromarray(a), id="grey-8-bit"),
        pytest.param(lambda a: Image.fromarray(a.astype(np.uint16)), id="grey-16-bit"),
        pytest.param(lambda a: Image.fromarray(a).convert("RGB"), id="grey-saved-as-rgb"),
    ],
)
def test_label_maps_are_read_by_what_their_pixels_mean(tmp_path, label_map):
    array, _ = load_image(_saved(tmp_path, label_map(LABELS)), labels=True)
    assert array.dtype == np.int32
    np.testing.assert_array_equal(array, LABELS.T)


def _voc(array: np.ndarray) -> Image.Image:
    image = Image.fromarray(array, mode="L").convert("P")
    image.putpalette(VOC_PALETTE)
    return image


def test_the_same_palette_file_read_as_a_picture_gives_its_colours(tmp_path):
    """What made a palette label map fail before: as a picture, index 2 is dark green's luminance."""
    array, _ = load_image(_saved(tmp_path, _voc(LABELS)))
    assert sorted(np.unique(array).round(2)) == [0.0, 38.27, 75.14]


def test_a_0_255_label_map_is_class_1(tmp_path):
    array, _ = load_image(_saved(tmp_path, Image.fromarray((LABELS > 0).astype(np.uint8) * 255)), labels=True)
    np.testing.assert_array_equal(array, (LABELS.T > 0).astype(np.int32))


def test_a_colour_coded_label_map_is_one_line_saying_what_to_save(tmp_path):
    colours = np.array(VOC_PALETTE, np.uint8).reshape(3, 3)[LABELS]
    path = _saved(tmp_path, Image.fromarray(colours, mode="RGB"), "rgb.png")
    with pytest.raises(
        InputError, match=r"rgb\.png: colour-coded label map \(3 colours: #000000, #008000, #800000\)"
    ) as err:
        load_image(path, labels=True)
    assert "\n" not in str(err.value) and "sonomuscle colour-labels" in str(err.value)


def test_fractional_label_values_are_refused(tmp_path):
    nib.save(nib.Nifti1Image(np.full((4, 4, 2), 1.5, np.float32), np.eye(4)), tmp_path / "l.nii.gz")
    with pytest.raises(InputError, match=r"l\.nii\.gz: label values must be non-negative integers"):
        load_image(tmp_path / "l.nii.gz", labels=True)


# --- DICOM -----------------------------------------------------------------------------------------------


def test_dicom_region_calibration_cm_to_mm_wins_over_pixel_spacing(tmp_path):
    path = write_dicom(tmp_path / "a.dcm", PICTURE, regions=[(0.01, 0.025)], pixel_spacing=(9, 9))
    array, spacing = load_image(path)
    np.testing.assert_array_equal(array, PICTURE.T)
    assert spacing == pytest.approx((0.1, 0.25))


def test_dicom_pixel_spacing_is_row_col_so_it_is_swapped(tmp_path):
    path = write_dicom(tmp_path / "a.dcm", PICTURE, pixel_spacing=(0.3, 0.1))  # row (Y) 0.3, col (X) 0.1
    assert load_image(path)[1] == pytest.approx((0.1, 0.3))


def test_dicom_without_calibration_or_with_conflicting_regions_has_no_spacing(tmp_path):
    assert load_image(write_dicom(tmp_path / "a.dcm", PICTURE))[1] is None
    conflicting = write_dicom(tmp_path / "b.dcm", PICTURE, regions=[(0.01, 0.01), (0.02, 0.02)])
    assert load_image(conflicting)[1] is None


def test_dicom_multiframe_stacks_frames_last_or_picks_one(tmp_path):
    frames = np.stack([PICTURE, PICTURE + 1, PICTURE + 2])
    path = write_dicom(tmp_path / "cine.dcm", frames, regions=[(0.01, 0.02)])
    array, spacing = load_image(path)
    assert array.shape == (7, 3, 3)
    np.testing.assert_array_equal(array, frames.transpose(2, 1, 0))
    assert spacing == pytest.approx((0.1, 0.2, 1.0))
    one, spacing = load_image(path, frame=2)
    np.testing.assert_array_equal(one, (PICTURE + 2).T)
    assert spacing == pytest.approx((0.1, 0.2))
    with pytest.raises(InputError, match=r"cine\.dcm: frame 3 out of range: file has 3 frame"):
        load_image(path, frame=3)


def test_dicom_colour_becomes_grey(tmp_path):
    rgb = rgb_picture()
    array, _ = load_image(write_dicom(tmp_path / "c.dcm", rgb, rgb=True))
    np.testing.assert_allclose(array, (rgb @ LUMA).T, atol=1e-3)


# --- volumes ---------------------------------------------------------------------------------------------


@pytest.fixture
def volume() -> np.ndarray:
    return np.random.default_rng(1).random((4, 5, 6)).astype(np.float32)


def test_nifti_array_and_spacing_as_monai_loads_them(tmp_path, volume):
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.diag([0.5, 0.25, 2.0, 1.0])), path)
    array, spacing = load_image(path)
    np.testing.assert_array_equal(array, volume)
    np.testing.assert_array_equal(array, LoadImage(image_only=True)(path).numpy())
    assert spacing == pytest.approx((0.5, 0.25, 2.0))


def test_nrrd_array_and_spacing(tmp_path, volume):
    path = tmp_path / "v.nrrd"
    header = {"space": "left-posterior-superior", "space directions": np.diag([0.5, 0.25, 2.0])}
    nrrd.write(str(path), volume, {**header, "space origin": np.zeros(3)})
    array, spacing = load_image(path)
    np.testing.assert_array_equal(array, volume)
    np.testing.assert_array_equal(array, LoadImage(image_only=True)(path).numpy())
    assert spacing == pytest.approx((0.5, 0.25, 2.0))


@pytest.mark.parametrize("name", ["v.mha", "v.mhd"])
def test_metaimage_array_and_spacing(tmp_path, volume, name):
    image = itk.image_from_array(np.ascontiguousarray(volume.transpose(2, 1, 0)))  # itk wants (Z, Y, X)
    image.SetSpacing([0.5, 0.25, 2.0])
    itk.imwrite(image, str(tmp_path / name))
    array, spacing = load_image(tmp_path / name)
    np.testing.assert_array_equal(array, volume)
    assert spacing == pytest.approx((0.5, 0.25, 2.0))


def test_a_2d_image_saved_as_a_one_slice_volume_reads_as_2d(tmp_path, volume):
    """3D Slicer keeps a 2D image as an (X, Y, 1) volume: it is the 2D image, with its pixel spacing."""
    path = tmp_path / "slicer.nii.gz"
    nib.save(nib.Nifti1Image(volume[..., :1], np.diag([0.1, 0.2, 1.0, 1.0])), path)
    array, spacing = load_image(path)
    np.testing.assert_array_equal(array, volume[..., 0])
    assert spacing == pytest.approx((0.1, 0.2))


# --- bad input -------------------------------------------------------------------------------------------


def test_bad_files_raise_one_line_input_errors(tmp_path):
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    Image.fromarray(PICTURE).save(tmp_path / "cut.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "cut.png").read_bytes()[:60])
    (tmp_path / "x.dcm").write_bytes(b"garbage")
    (tmp_path / "a.gif").write_bytes(b"GIF89a")
    nan = np.ones((3, 3, 2), np.float32)
    nan[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(nan, np.eye(4)), tmp_path / "nan.nii")
    nib.save(nib.Nifti1Image(np.ones((0, 3, 2), np.float32), np.eye(4)), tmp_path / "empty.nii")
    pages = [Image.fromarray(PICTURE), Image.fromarray(PICTURE)]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    expected = {
        "missing.png": "file not found",
        "corrupt.png": "cannot read file",
        "cut.png": "cannot read file",
        "x.dcm": "cannot read file",
        "a.gif": "unsupported file type '.gif'",
        "nan.nii": "1 NaN or infinite values",
        "empty.nii": "empty image",
        "pages.tif": "2 pages; save them as separate files",
    }
    for name, problem in expected.items():
        with pytest.raises(InputError) as err:
            load_image(tmp_path / name)
        message = str(err.value)
        assert message.startswith(str(tmp_path / name) + ": ") and problem in message, message
        assert "\n" not in message


# --- the MONAI reader ------------------------------------------------------------------------------------


def test_reader_in_load_imaged_for_image_and_label(tmp_path):
    Image.fromarray(PICTURE).save(tmp_path / "img.png")
    Image.fromarray((PICTURE > 5).astype(np.uint8) * 255).save(tmp_path / "lab.png")
    data = {"image": str(tmp_path / "img.png"), "label": str(tmp_path / "lab.png")}
    out = LoadImaged("image", reader=UltrasoundImageReader(), ensure_channel_first=True)(data)
    out = LoadImaged("label", reader=UltrasoundImageReader(mask=True), ensure_channel_first=True)(out)
    assert out["image"].shape == out["label"].shape == (1, 7, 3)
    np.testing.assert_array_equal(out["image"][0].numpy(), PICTURE.T)
    np.testing.assert_array_equal(out["label"][0].numpy(), PICTURE.T > 5)
    assert out["image"].meta["spacing_known"] is False
    np.testing.assert_array_equal(out["image"].affine.numpy(), np.eye(4))


def test_reader_affine_carries_dicom_calibration(tmp_path):
    path = write_dicom(tmp_path / "a.dcm", PICTURE, regions=[(0.01, 0.025)])
    image = LoadImage(reader=UltrasoundImageReader(), image_only=True, ensure_channel_first=True)(path)
    assert image.shape == (1, 7, 3) and image.meta["spacing_known"] is True
    np.testing.assert_allclose(image.pixdim.numpy(), [0.1, 0.25])


def test_png_load_resize_invert_save_round_trips_exactly(tmp_path):
    """The bundles' inference path: nothing transposed, flipped or shifted on the way back to disk."""
    mask = np.zeros((40, 60), np.uint8)  # rows × cols
    mask[5:12, 40:55] = 255
    Image.fromarray(mask).save(tmp_path / "case.png")
    pre = Compose(
        [
            LoadImaged("label", reader=UltrasoundImageReader()),
            EnsureChannelFirstd("label"),
            Resized("label", spatial_size=(120, 80), mode="nearest"),  # x2: exactly invertible
        ]
    )
    data = pre({"label": str(tmp_path / "case.png")})
    assert data["label"].shape == (1, 120, 80)
    post = Compose(
        [
            Invertd("label", transform=pre, orig_keys="label"),
            SaveImaged(
                "label",
                output_dir=tmp_path / "out",
                output_ext=".png",
                output_postfix="",
                output_dtype=np.uint8,
                separate_folder=False,
                scale=None,
            ),
        ]
    )
    post(data)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "case.png")), mask)
