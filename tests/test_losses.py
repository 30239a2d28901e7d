"""The partial-label loss ignores unannotated pixels and learns thin structures instead of all-background."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss, DiceLoss

from sonomuscle.losses import LabelMapDiceCELoss, MarginalDiceCELoss, PartialLabelDiceFocalLoss
from sonomuscle.transforms.labels import NOT_ANNOTATED


def _thin_lines(n: int = 64) -> torch.Tensor:
    """A (1, 2, n, n) target: a thick band (aponeurosis-like) and one-pixel lines (~1 % of pixels)."""
    y = torch.zeros(1, 2, n, n)
    y[0, 0, :, 5:9] = 1
    y[0, 1, ::32, 20:40] = 1  # 40 of 4096 pixels
    return y


def test_unannotated_channel_gets_no_gradient_and_does_not_change_the_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 16, 16, requires_grad=True)
    target = (torch.rand(2, 2, 16, 16) > 0.8).float()
    target[1, 1] = -1
    loss = PartialLabelDiceFocalLoss()
    value = loss(logits, target)
    value.backward()
    assert logits.grad[1, 1].abs().sum() == 0 and logits.grad[0, 1].abs().sum() > 0

    changed = logits.detach().clone()
    changed[1, 1] = 100.0  # whatever the network says where nothing is annotated
    torch.testing.assert_close(loss(changed, target), value.detach())


def test_all_background_is_expensive_for_thin_structures_unlike_plain_bce():
    target = _thin_lines()
    loss = PartialLabelDiceFocalLoss()
    background = torch.full_like(target, -10.0)
    perfect = target * 20.0 - 10.0
    # plain BCE barely notices missing lines covering ~1 % of the image: the collapse a thin target invites
    assert torch.nn.functional.binary_cross_entropy_with_logits(background[:, 1], target[:, 1]) < 0.15
    assert loss(background, target) > 0.5  # Dice term of the missed structure stays near 1
    assert loss(perfect, target) < 0.01


def test_label_map_loss_learns_nothing_from_unannotated_voxels_and_matches_monai_elsewhere():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, 6, requires_grad=True)
    target = torch.randint(0, 3, (2, 1, 8, 8, 6)).float()
    target[:, :, :2] = -1  # padded in by augmentation: not annotated

    LabelMapDiceCELoss()(logits, target).backward()
    assert logits.grad[:, :, :2].abs().max() == 0
    assert logits.grad[:, :, 2:].abs().max() > 0

    annotated = LabelMapDiceCELoss()(logits[:, :, 2:], target[:, :, 2:])
    reference = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False)
    assert annotated.item() == pytest.approx(reference(logits[:, :, 2:], target[:, :, 2:]).item(), rel=1e-5)


def _channels(label_map: torch.Tensor, classes: int) -> torch.Tensor:
    """One-hot ``(B, K+1, ...)`` of a label map ``(B, ...)``, as LabelMapChannelsd makes it."""
    return torch.nn.functional.one_hot(label_map.long(), classes).movedim(-1, 1).float()


def test_marginal_loss_of_a_fully_annotated_map_is_dice_plus_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    label_map = torch.randint(0, 3, (2, 8, 8))
    loss = MarginalDiceCELoss()(logits, _channels(label_map, 3))
    cross_entropy = torch.nn.functional.cross_entropy(logits, label_map)
    dice = DiceLoss(softmax=True, include_background=False, batch=True, smooth_nr=1e-5, smooth_dr=1e-5)
    assert loss.item() == pytest.approx(
        (cross_entropy + dice(logits, _channels(label_map, 3))).item(), rel=1e-4
    )


def test_marginal_loss_does_not_punish_a_class_nobody_outlined_in_the_background():
    """Background of an image where class 2 was not outlined may be class 2: calling it so costs nothing,
    calling it class 1 (which was outlined, and is not there) does."""
    label_map = torch.zeros(1, 8, 8, dtype=torch.long)
    label_map[:, :4] = 1
    target = _channels(label_map, 3)
    target[:, [0, 2]] = torch.where(label_map[:, None] == 0, NOT_ANNOTATED, target[:, [0, 2]])

    def logits_saying(background_class: int) -> torch.Tensor:
        said = label_map.clone()
        said[label_map == 0] = background_class
        return _channels(said, 3) * 20.0

    loss = MarginalDiceCELoss()
    assert loss(logits_saying(2), target) == pytest.approx(loss(logits_saying(0), target).item(), abs=1e-3)
    assert loss(logits_saying(1), target) > loss(logits_saying(0), target) + 1.0
    padding = torch.full_like(target, NOT_ANNOTATED)
    assert loss(torch.randn(1, 3, 8, 8), padding).item() == 0.0
