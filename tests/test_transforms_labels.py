"""Partial labels: present kinds stacked as 0/1 channels, missing kinds -1, and blanked before metrics."""

from __future__ import annotations

import torch
from monai.data import MetaTensor
from monai.metrics import DiceMetric

from sonomuscle.transforms.labels import IgnoreUnannotatedd, StackLabelsd


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
