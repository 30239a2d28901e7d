"""Partial labels: present kinds stacked as 0/1 channels, missing kinds -1, kept -1 through spatial
augmentation (padding included), and blanked before metrics."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor
from monai.metrics import DiceMetric
from monai.transforms import Compose, Rand2DElasticd, Rand3DElasticd, RandRotated
from monai.utils import set_determinism

from sonomuscle.errors import InputError
from sonomuscle.transforms.labels import (
    NOT_ANNOTATED,
    IgnoreUnannotatedd,
    LabelMapChannelsd,
    LabelMapd,
    ShiftLabeld,
    StackLabelsd,
)


def _entry(**labels):
    image = MetaTensor(torch.rand(1, 12, 10), meta={"filename_or_obj": "img.png"})
    return {"image": image, **{k: MetaTensor(v[None]) for k, v in labels.items()}}


def test_stack_labels_binarises_present_kinds_and_marks_missing_ones():
    apo = torch.zeros(12, 10, dtype=torch.uint8)
    apo[2:4] = 255
    out = StackLabelsd(["aponeurosis", "fascicle"])(_entry(aponeurosis=apo))
    label = out["label"]
    assert label.shape == (2, 12, 10) and label.dtype == torch.float32
    torch.testing.assert_close(label[0], (apo > 0).float())
    assert (label[1] == -1).all()
    assert "aponeurosis" not in out and label.meta["filename_or_obj"] == "img.png"


VALUES = {"aponeurosis": 1, "fascicle": 2}


def _architecture_map() -> torch.Tensor:
    label_map = torch.zeros(12, 10)
    label_map[2:4] = 1
    label_map[6:9, 3:5] = 2
    return label_map


def test_stack_labels_reads_a_label_map_as_a_viewer_saves_it():
    out = StackLabelsd(["aponeurosis", "fascicle"], map_values=VALUES)(_entry(label=_architecture_map()))
    torch.testing.assert_close(out["label"][0], (_architecture_map() == 1).float())
    torch.testing.assert_close(out["label"][1], (_architecture_map() == 2).float())


def test_stack_labels_counts_a_kind_missing_from_the_map_as_not_annotated_unless_listed():
    aponeuroses_only = _architecture_map().where(_architecture_map() != 2, 0)
    out = StackLabelsd(["aponeurosis", "fascicle"], map_values=VALUES)(_entry(label=aponeuroses_only))
    assert (out["label"][1] == NOT_ANNOTATED).all()
    listed = {**_entry(label=aponeuroses_only), "annotated": ["aponeurosis", "fascicle"]}
    out = StackLabelsd(["aponeurosis", "fascicle"], map_values=VALUES)(listed)
    assert (out["label"][1] == 0).all() and "annotated" not in out  # known absent


def test_stack_labels_prefers_per_kind_masks_over_a_map():
    apo = torch.zeros(12, 10)
    apo[0] = 1
    out = StackLabelsd(["aponeurosis", "fascicle"], map_values=VALUES)(
        _entry(aponeurosis=apo, label=_architecture_map())
    )
    torch.testing.assert_close(out["label"][0], apo)
    assert (out["label"][1] == NOT_ANNOTATED).all()


def test_label_map_round_trips_channels_and_gives_overlaps_to_the_first_channel():
    channels = StackLabelsd(["aponeurosis", "fascicle"], map_values=VALUES)(
        _entry(label=_architecture_map())
    )["label"]
    channels[1, 2, 0] = 1  # a pixel marked as both
    out = LabelMapd("pred", list(VALUES.values()))(
        {"pred": MetaTensor(channels, meta={"filename_or_obj": "x"})}
    )
    assert out["pred"].shape == (1, 12, 10) and out["pred"].dtype == torch.uint8
    torch.testing.assert_close(out["pred"][0], _architecture_map().to(torch.uint8))
    assert out["pred"].meta["filename_or_obj"] == "x"


def test_ignore_unannotated_makes_dice_nan_only_for_the_missing_channel():
    apo = torch.zeros(12, 10)
    apo[2:5] = 1
    label = StackLabelsd(["aponeurosis", "fascicle"])(_entry(aponeurosis=apo))["label"]
    pred = torch.ones(2, 12, 10)  # predicts everything: fascicle would score ~0 if not ignored
    out = IgnoreUnannotatedd(["pred", "label"])({"pred": pred, "label": label})
    assert (out["pred"][1] == 0).all() and (out["label"][1] == 0).all()
    dice = DiceMetric(include_background=True, ignore_empty=True)(out["pred"][None], out["label"][None])
    assert torch.isnan(dice[0, 1])
    torch.testing.assert_close(dice[0, 0], torch.tensor(2 * 30 / (120 + 30)))


# as the bundles configure them: image bilinear, label nearest, zero padding
AS_IN_BUNDLES = {
    "keys": ["image", "label"],
    "prob": 1.0,
    "mode": ["bilinear", "nearest"],
    "padding_mode": "zeros",
}


@pytest.mark.parametrize(
    "augment",
    [
        RandRotated(range_x=(0.7, 0.8), **AS_IN_BUNDLES),
        Rand2DElasticd(spacing=(8, 8), magnitude_range=(2, 3), scale_range=(0.3, 0.3), **AS_IN_BUNDLES),
        Rand3DElasticd(
            sigma_range=(3, 4), magnitude_range=(20, 30), rotate_range=(0.6, 0.6, 0.6), **AS_IN_BUNDLES
        ),
    ],
    ids=["rotate-2d", "elastic-2d", "elastic-3d"],
)
def test_shifted_label_pads_as_not_annotated_through_spatial_augmentation(augment):
    spatial = (24, 20, 16) if isinstance(augment, Rand3DElasticd) else (40, 32)
    label = torch.zeros(2, *spatial)
    label[0, 10:14] = 1  # annotated: background and a band
    label[1] = NOT_ANNOTATED  # a kind this image lacks
    data = {"image": MetaTensor(torch.ones(1, *spatial)), "label": MetaTensor(label)}
    set_determinism(seed=0)  # the deformation grids draw from numpy's global generator
    augment.set_random_state(0)
    out = Compose([ShiftLabeld("label", 1.0), augment, ShiftLabeld("label", -1.0)])(data)

    # wholly outside / inside the field of view (the image is 1 inside; bilinear blurs the border)
    outside, inside = out["image"][0] == 0, out["image"][0] == 1
    label = out["label"]
    assert outside.any() and inside.any()
    assert (label[0][outside] == NOT_ANNOTATED).all()  # unannotated, not background
    assert set(label[0][inside].unique().tolist()) == {0.0, 1.0}
    assert (label[1] == NOT_ANNOTATED).all()


def _label_map() -> MetaTensor:
    label_map = torch.zeros(1, 6, 6)
    label_map[0, :2, :2] = 1  # rf
    label_map[0, 4:, 4:] = 7  # vm (values need not be consecutive)
    return MetaTensor(label_map, meta={"filename_or_obj": "case.png"})


CLASSES = {"rf": 1, "vl": 2, "vm": 7}


def test_label_map_channels_one_hot_when_every_class_is_outlined():
    label = LabelMapChannelsd("label", CLASSES)({"label": _label_map()})["label"]
    assert label.shape == (4, 6, 6) and set(label.unique().tolist()) == {0.0, 1.0}
    assert label[:, 0, 0].tolist() == [0, 1, 0, 0] and label[:, 5, 5].tolist() == [0, 0, 0, 1]
    assert label[:, 3, 3].tolist() == [1, 0, 0, 0]  # vl absent from the image: known background


def test_label_map_channels_leave_background_open_to_classes_not_outlined():
    d = LabelMapChannelsd("label", CLASSES)({"label": _label_map(), "annotated": ["rf"]})
    label = d["label"]
    assert "annotated" not in d  # a ragged list would not collate into a batch
    # a background pixel may be background, vl or vm; it is surely not rf, which was outlined
    assert label[:, 3, 3].tolist() == [NOT_ANNOTATED, 0, NOT_ANNOTATED, NOT_ANNOTATED]
    assert label[:, 0, 0].tolist() == [0, 1, 0, 0]


def test_label_map_channels_refuse_an_unknown_annotated_class():
    with pytest.raises(InputError, match=r"case.png: 'annotated' names \['soleus'\]"):
        LabelMapChannelsd("label", CLASSES)({"label": _label_map(), "annotated": ["soleus"]})
