"""Ultrasound augmentations: containers, determinism, and the physics each one claims."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd, RandFlipd, RandRotate90d
from PIL import Image
from scipy.ndimage import uniform_filter

from sonomuscle.errors import InputError
from sonomuscle.transforms.ultrasound import (
    RandAcousticShadowd,
    RandDepthGaind,
    RandDynamicRanged,
    RandProbeFootprintd,
    RandSpeckled,
)
from sonomuscle.workflows import bundle_dir

TRANSFORMS = [RandSpeckled, RandDepthGaind, RandDynamicRanged, RandAcousticShadowd, RandProbeFootprintd]
SHAPES = {2: (1, 64, 48), 3: (1, 24, 32, 16)}


def _image(shape: tuple[int, ...], low: float = 0.1, high: float = 0.9, seed: int = 0) -> MetaTensor:
    rng = np.random.default_rng(seed)
    data = torch.as_tensor(rng.uniform(low, high, shape), dtype=torch.float32)
    return MetaTensor(
        data, affine=torch.diag(torch.tensor([0.2, 0.1, 0.3, 1.0])), meta={"filename_or_obj": "scan.png"}
    )


def _run(transform, image, seed: int = 0):
    transform.set_random_state(seed)
    return transform({"image": image})["image"]


@pytest.mark.parametrize("transform_cls", TRANSFORMS)
@pytest.mark.parametrize("dims", [2, 3])
def test_keeps_container_shape_dtype_and_metadata(transform_cls, dims):
    image = _image(SHAPES[dims])
    out = _run(transform_cls("image", prob=1.0), image)
    assert isinstance(out, MetaTensor) and out.dtype == torch.float32 and out.shape == image.shape
    assert out.meta["filename_or_obj"] == "scan.png" and torch.equal(out.affine, image.affine)
    assert len(out.applied_operations) == 0  # intensity only: nothing for Invertd to undo
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.equal(out, image)


@pytest.mark.parametrize("transform_cls", TRANSFORMS)
def test_seeded_determinism_and_prob_zero(transform_cls):
    image = _image(SHAPES[2])
    first, again = (
        _run(transform_cls("image", prob=1.0), image, 3),
        _run(transform_cls("image", prob=1.0), image, 3),
    )
    assert torch.equal(first, again)
    assert not torch.equal(first, _run(transform_cls("image", prob=1.0), image, 4))
    assert _run(transform_cls("image", prob=0.0), image) is image


@pytest.mark.parametrize("transform_cls", TRANSFORMS)
def test_numpy_and_tensor_inputs_keep_their_type(transform_cls):
    array = np.asarray(_image(SHAPES[3]).array)
    out = transform_cls("image", prob=1.0)({"image": array})["image"]
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == array.shape
    out = transform_cls("image", prob=1.0)({"image": torch.from_numpy(array)})["image"]
    assert type(out) is torch.Tensor and out.dtype == torch.float32


def test_all_keys_share_one_draw_and_missing_keys_are_allowed():
    image = _image(SHAPES[2])
    out = RandSpeckled(["image", "second", "absent"], prob=1.0, allow_missing_keys=True)(
        {"image": image, "second": image.clone()}
    )
    assert torch.equal(out["image"], out["second"])


def test_image_without_channel_axis_is_an_input_error():
    image = MetaTensor(torch.rand(32, 32), meta={"filename_or_obj": "flat.png"})
    with pytest.raises(InputError, match=r"^flat\.png: RandDepthGaind needs a channel-first"):
        RandDepthGaind("image", prob=1.0)({"image": image})


@pytest.mark.parametrize(("distribution", "expected_cv"), [("rayleigh", 0.523), ("gamma", 1.0)])
def test_speckle_has_unit_mean_field_with_the_distributions_contrast(distribution, expected_cv):
    """On a flat image the output / input is the speckle field: mean 1, std/mean of Rayleigh or exponential."""
    image = MetaTensor(torch.full((1, 192, 192), 0.08))
    speckle = RandSpeckled("image", prob=1.0, strength=(1.0, 1.0), sigma=1.0, distribution=distribution)
    field = _run(speckle, image)[0] / 0.08
    assert float(field.mean()) == pytest.approx(1.0, abs=0.02)
    assert float(field.std() / field.mean()) == pytest.approx(expected_cv, rel=0.08)


def test_speckle_grain_follows_sigma_per_axis():
    image = MetaTensor(torch.full((1, 160, 160), 0.2))
    field = _run(RandSpeckled("image", prob=1.0, strength=(1.0, 1.0), sigma=(3.0, 0.5)), image)[0].double()
    field = field - field.mean()

    def lag1(axis: int) -> float:
        a, b = field.narrow(axis, 0, field.shape[axis] - 1), field.narrow(axis, 1, field.shape[axis] - 1)
        return float((a * b).mean() / field.var())

    assert lag1(0) > 0.8 and lag1(1) < 0.5  # grains elongated laterally, short in depth


def test_speckle_keeps_mean_and_raises_local_variance_on_real_image(dl_track_dir):
    path = sorted((dl_track_dir / "aponeurosis" / "images").glob("*.png"))[0]
    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float32).T / 255.0  # (X, Y), depth on axis 1
    image = MetaTensor(torch.from_numpy(pixels)[None])
    out = _run(RandSpeckled("image", prob=1.0, strength=(0.5, 0.5)), image)[0].numpy()

    def local_var(x: np.ndarray) -> float:
        return float(np.mean(uniform_filter(x**2, 5) - uniform_filter(x, 5) ** 2))

    assert out.mean() == pytest.approx(pixels.mean(), rel=0.03)
    assert local_var(out) > 1.3 * local_var(pixels)


@pytest.mark.parametrize(("dims", "depth_axis"), [(2, 1), (2, 0), (3, 1)])
def test_depth_gain_varies_only_along_depth(dims, depth_axis):
    image = _image(SHAPES[dims], 0.05, 0.4)
    ratio = _run(RandDepthGaind("image", prob=1.0, depth_axis=depth_axis), image)[0] / image[0]
    lateral = [axis for axis in range(dims) if axis != depth_axis]
    assert float(ratio.std(dim=lateral).max()) < 1e-5
    assert float(ratio.mean(dim=lateral).std()) > 0.01


def test_pure_attenuation_is_exponential_in_depth():
    image = _image((1, 8, 50), 0.2, 0.4)
    gain = RandDepthGaind("image", prob=1.0, attenuation=(0.9, 0.9), tgc_range=(1.0, 1.0))
    ratio = _run(gain, image)[0] / image[0]
    expected = torch.exp(-0.9 * torch.linspace(0.0, 1.0, 50)).expand(8, 50)
    torch.testing.assert_close(ratio, expected, atol=1e-5, rtol=1e-5)


def test_dynamic_range_remaps_log_compressed_intensities():
    image = MetaTensor(torch.linspace(0.0, 1.0, 101).reshape(1, 101, 1).expand(1, 101, 3).clone())
    wider = _run(RandDynamicRanged("image", prob=1.0, source_db=60.0, target_db=(80.0, 80.0)), image)
    torch.testing.assert_close(wider, 1.0 - (1.0 - image) * 0.75)  # black lifts to -60 dB of an 80 dB range
    narrower = _run(RandDynamicRanged("image", prob=1.0, source_db=60.0, target_db=(30.0, 30.0)), image)
    assert torch.all(narrower[image <= 0.5] == 0.0) and torch.all(
        narrower[0, -1] == 1.0
    )  # below -30 dB: black


@pytest.mark.parametrize("dims", [2, 3])
def test_shadow_darkens_one_band_below_its_start_only(dims):
    image = _image(SHAPES[dims], 0.2, 0.8)
    shadow = RandAcousticShadowd("image", prob=1.0, start=(0.5, 0.5), strength=(0.6, 0.6), width=(0.3, 0.3))
    out = _run(shadow, image, seed=5)
    ratio = (out / image)[0]
    darker = ratio < 1.0 - 1e-6
    start = round(0.5 * (image.shape[2] - 1))
    assert torch.all(ratio <= 1.0 + 1e-6)
    assert not darker[:, :start].any() and darker[:, start + 1 :].any()
    deep = ratio[:, -1]  # the deepest row: full darkening in the band's core, none outside the band
    assert float(deep.min()) == pytest.approx(0.4, abs=1e-5)
    assert torch.equal(
        darker[:, -1], darker[:, start + 1 :].any(dim=1)
    )  # one column, same band at every depth
    columns = darker[:, -1].reshape(darker.shape[0], -1).any(dim=1).nonzero().flatten()
    assert int(columns[-1] - columns[0]) + 1 == len(columns)  # contiguous lateral band


def test_shadow_hangs_below_the_brightest_reflector():
    image = _image((1, 64, 80), 0.1, 0.3)
    image[:, :, 37] = 0.95  # a bone-like bright line across the image
    shadow = RandAcousticShadowd("image", prob=1.0, start=(0.2, 0.8), strength=(0.8, 0.8), below_bright=True)
    ratio = (_run(shadow, image, seed=2) / image)[0]
    darker = ratio < 1.0 - 1e-6
    assert not darker[:, :38].any() and darker[:, 38:].any()
    assert float(ratio[:, 60:].min()) == pytest.approx(0.2, abs=1e-5)


@pytest.mark.parametrize("shape", ["trapezoid", "sector"])
@pytest.mark.parametrize("dims", [2, 3])
def test_footprint_zeros_outside_only(shape, dims):
    image = _image(SHAPES[dims])
    footprint = RandProbeFootprintd("image", prob=1.0, shapes=[shape], margin=(0.05, 0.1), angle=(15.0, 25.0))
    out = _run(footprint, image, seed=1)
    kept = out != 0
    assert torch.equal(out[kept], image[kept]) and (~kept).any()
    plane = kept[0] if dims == 2 else kept[0, ..., 0]
    if dims == 3:
        assert torch.equal(kept[0], plane[..., None].expand_as(kept[0]))  # same footprint in every B-scan
    assert not plane[0].any() and not plane[-1].any()  # margins on both sides

    def spans(mask: torch.Tensor) -> list[torch.Tensor]:
        return [line.nonzero().flatten() for line in mask if line.any()]

    columns = spans(plane)
    assert all(int(c[-1] - c[0]) + 1 == len(c) for c in columns)  # each vertical line: one depth span
    bottoms = [int(c[-1]) for c in columns]
    if shape == "trapezoid":  # flat bottom, rows widen with depth
        rows = spans(plane.T)
        assert len(set(bottoms)) == 1 and len(rows[0]) < len(rows[-1])
    else:  # a fan: the bottom arc is deepest in the middle and rises towards both sides
        assert max(bottoms[0], bottoms[-1]) < max(bottoms)


def _bundle_augmentation(bundle: str) -> Compose:
    """A bundle's own ``train#augmentation`` list, as its training composes it."""
    parser = ConfigParser()
    parser.read_config(str(bundle_dir(bundle) / "configs" / "train.json"))
    return Compose(parser.get_parsed_content("train#augmentation"))


def test_architecture_augmentation_keeps_label_values_and_unannotated_channels_unannotated():
    shape = (64, 48)
    image = _image((1, *shape))
    label = MetaTensor(torch.stack([(torch.rand(shape) > 0.7).float(), torch.full(shape, -1.0)]))
    stack = _bundle_augmentation("muscle_architecture_2d")
    changed = 0
    for seed in range(12):
        runs = [stack.set_random_state(seed)({"image": image, "label": label.clone()}) for _ in range(2)]
        out = runs[0]
        assert torch.equal(out["image"], runs[1]["image"]) and torch.equal(out["label"], runs[1]["label"])
        assert out["image"].shape == (1, *shape) and out["label"].shape == (2, *shape)
        assert torch.isfinite(out["image"]).all() and out["image"].dtype == torch.float32
        # pixels brought in from outside the picture are "not annotated" (-1), docs/CONVENTIONS.md
        assert set(out["label"][0].unique().tolist()) <= {-1.0, 0.0, 1.0}
        assert torch.all(out["label"][1] == -1.0)  # "not annotated" stays so through every resampling
        changed += not torch.equal(out["image"], image)
    assert changed >= 6  # each transform fires on a share of draws; together they change most pictures


def test_volumetric_augmentation_crops_patches_with_the_label_values_kept():
    image = _image((1, 72, 72, 40))
    label = MetaTensor(torch.zeros(1, 72, 72, 40))
    label[0, 16:56, 20:52, 8:32] = 1.0
    label[0, 26:46, 28:44, 14:26] = 2.0
    stack = _bundle_augmentation("ciliary_muscle_3d")
    parser = ConfigParser()
    parser.read_config(str(bundle_dir("ciliary_muscle_3d") / "configs" / "train.json"))
    size, samples = parser["spatial_size"], parser["num_samples"]
    patches = stack.set_random_state(3)({"image": image, "label": label})
    assert len(patches) == samples
    for patch in patches:
        assert patch["image"].shape == (1, *size) and patch["label"].shape == (1, *size)
        assert set(patch["label"].unique().tolist()) <= {-1.0, 0.0, 1.0, 2.0}  # -1: brought in from outside


def test_invertd_undoes_geometry_across_intensity_transforms():
    image, label = _image(SHAPES[2]), MetaTensor((torch.rand(SHAPES[2]) > 0.5).float())
    intensity = [cls(["image"], prob=1.0) for cls in TRANSFORMS]
    geometry = [
        RandFlipd(["image", "label"], prob=1.0, spatial_axis=0),
        RandRotate90d(["image", "label"], prob=1.0),
    ]
    pipeline = Compose([intensity[0], geometry[0], *intensity[1:], geometry[1]]).set_random_state(0)
    out = pipeline({"image": image, "label": label.clone()})
    assert len(out["image"].applied_operations) == 2
    out["pred"] = out["label"].clone()
    inverted = Invertd("pred", pipeline, orig_keys="image")(out)["pred"]
    assert torch.equal(inverted.as_tensor(), label.as_tensor())
