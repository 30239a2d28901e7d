"""Losses that skip what nobody annotated: multi-label thin structures (2D) and label maps (3D).

Labels follow docs/CONVENTIONS.md: one channel per structure, 0/1, and ``-1`` where a structure was not
annotated. ``PartialLabelDiceFocalLoss`` ignores ``-1`` pixels channel by channel: MONAI's ``MaskedDiceLoss``
(per channel, batch-wise, so a structure covering 0.3 % of the pixels still has a full-weight Dice term)
plus MONAI's sigmoid ``FocalLoss`` averaged over the annotated pixels only.

Which pixel term keeps thin fascicles alive was measured, not assumed: on phantoms (42 training images,
330 iterations) an unweighted focal term (γ = 2) and Dice alone both left the fascicle channel empty or
everywhere (held-out fascicle Dice 0.00 / 0.01), while an ``alpha``-balanced cross-entropy (γ = 0,
α = 0.98: a fascicle pixel weighs 49 background pixels) learned it (0.08 against the sparse annotation,
aponeurosis Dice unchanged). On the real DL_Track images (423 training images, 12 epochs, validation
Dice at 256²) that scalar α also over-weighted the aponeurosis foreground and thickened its bands
(aponeurosis 0.80); a per-channel ``alpha`` (MONAI weighs positives of channel c by ``alpha[c]``,
negatives by 1) of ``[1, 49]`` — plain cross-entropy for aponeuroses, 49:1 for fascicles — gave 0.83. The
bundle sets γ = 0 and that per-channel α; the defaults here are the generic Dice + focal.

``LabelMapDiceCELoss`` is MONAI's Dice + cross-entropy for a label map (0..K), skipping voxels labelled
``-1``: what spatial augmentation padded in from outside the volume (``ShiftLabeld``).

``MarginalDiceCELoss`` is the softmax loss for label maps of named classes given as one channel per class
(``LabelMapChannelsd``), where an image may outline only some classes. A background pixel of such an image
may belong to any class not outlined, so its cross-entropy takes the probability of that set of classes
(the marginal loss of Shi et al. 2021, Med Image Anal 70:101979), and each class's Dice counts only the
pixels where that class is known. A fully annotated image reduces to plain Dice + cross-entropy.
"""

from __future__ import annotations

import torch
from monai.losses import DiceLoss, FocalLoss, MaskedDiceLoss
from torch import nn

from sonomuscle.transforms.labels import NOT_ANNOTATED


class PartialLabelDiceFocalLoss(nn.Module):
    """Masked Dice + masked sigmoid focal loss on logits ``(B, C, ...)``; targets 0/1 with ``-1`` ignored."""

    def __init__(
        self,
        lambda_dice: float = 1.0,
        lambda_focal: float = 1.0,
        gamma: float = 2.0,
        alpha: float | None = None,
    ) -> None:
        super().__init__()
        self.lambda_dice = lambda_dice
        self.lambda_focal = lambda_focal
        self.dice = MaskedDiceLoss(sigmoid=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5)
        self.focal = FocalLoss(gamma=gamma, alpha=alpha, use_softmax=False, reduction="none")

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        annotated = (target >= 0).to(input.dtype)
        target = target.clamp(min=0).to(input.dtype)
        dice = _masked_dice(self.dice, input, target, annotated, range(input.shape[1]))
        focal = (self.focal(input, target) * annotated).sum() / annotated.sum().clamp(min=1.0)
        return self.lambda_dice * dice + self.lambda_focal * focal


class MarginalDiceCELoss(nn.Module):
    """Softmax Dice + marginal cross-entropy on logits ``(B, K+1, ...)`` against per-class channels
    ``(B, K+1, ...)`` holding 1 (is), 0 (is not) or ``-1`` (not known); pixels known nowhere are skipped."""

    def __init__(
        self, include_background: bool = False, lambda_dice: float = 1.0, lambda_ce: float = 1.0
    ) -> None:
        super().__init__()
        self.first_channel = 0 if include_background else 1
        self.lambda_dice = lambda_dice
        self.lambda_ce = lambda_ce
        self.dice = MaskedDiceLoss(batch=True, smooth_nr=1e-5, smooth_dr=1e-5)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = input.float().log_softmax(dim=1)
        possible = target != 0  # 1 or -1: the classes this pixel may belong to
        log_possible = torch.logsumexp(log_p.masked_fill(~possible, float("-inf")), dim=1)
        known = (target >= 0).any(dim=1)  # padding (every channel -1) teaches nothing
        ce = -(log_possible * known).sum() / known.sum().clamp(min=1)
        annotated = (target >= 0).to(log_p.dtype)
        channels = range(self.first_channel, input.shape[1])
        dice = _masked_dice(self.dice, log_p.exp(), target.clamp(min=0).to(log_p.dtype), annotated, channels)
        return self.lambda_dice * dice + self.lambda_ce * ce


def _masked_dice(
    dice: MaskedDiceLoss, input: torch.Tensor, target: torch.Tensor, annotated: torch.Tensor, channels: range
) -> torch.Tensor:
    """Mean of ``dice`` over the ``channels`` with annotated pixels in the batch, each on those pixels only."""
    terms = [
        dice(input[:, c : c + 1], target[:, c : c + 1], mask=annotated[:, c : c + 1])
        for c in channels
        if annotated[:, c].any()
    ]
    return torch.stack(terms).mean() if terms else input.sum() * 0.0


class LabelMapDiceCELoss(nn.Module):
    """Softmax Dice + cross-entropy on logits ``(B, K+1, ...)`` against a label map ``(B, 1, ...)``; ``-1`` ignored."""

    def __init__(self, include_background: bool = False) -> None:
        super().__init__()
        ignore = int(NOT_ANNOTATED)
        self.dice = DiceLoss(
            include_background=include_background, to_onehot_y=True, softmax=True, ignore_index=ignore
        )
        self.cross_entropy = nn.CrossEntropyLoss(ignore_index=ignore)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.dice(input, target) + self.cross_entropy(input, target[:, 0].long())
