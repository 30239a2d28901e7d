"""The image-level network, and the transfer of a segmentation U-Net's encoder into it.

No ImageNet weights can be downloaded where our users often work, but every sonomuscle segmentation
bundle ships a U-Net trained on muscle ultrasound. :class:`ImageLevelNet` is MONAI's ``Regressor`` whose
convolutional layers are built exactly as ``UNet`` builds its encoder (residual units with normalisation
and activation, stride 2 per level, a stride-1 bottom), so those weights load layer for layer
(:func:`load_unet_encoder`). A global-average-pooled linear head replaces ``Regressor``'s flatten-and-dense
one: it does not tie the network to one input size and has far fewer weights to overfit a small dataset.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence

from monai.networks.nets import Regressor
from torch import nn

from sonomuscle.errors import InputError, switched_off

logger = logging.getLogger(__name__)


class ImageLevelNet(Regressor):
    """Image → ``num_outputs`` values (class logits, or standardised targets).

    ``channels`` and ``strides`` are the encoder's; give a segmentation bundle's ``channels`` and
    ``[2] * (len(channels) - 1) + [1]`` to take its weights.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_outputs: int,
        channels: Sequence[int],
        strides: Sequence[int],
        num_res_units: int = 2,
        norm: str | tuple = "batch",
        dropout: float = 0.0,
        head_dropout: float = 0.3,
        pool_size: int = 1,
    ) -> None:
        # read by _get_final_layer, which the parent's __init__ calls
        self.head_dropout = head_dropout
        self.pool_size = pool_size
        super().__init__(
            in_shape=(in_channels, *[64] * spatial_dims),  # sizes only matter to the head we replace
            out_shape=(num_outputs,),
            channels=channels,
            strides=strides,
            num_res_units=num_res_units,
            norm=norm,
            dropout=dropout,
        )

    def _get_layer(self, in_channels: int, out_channels: int, strides: int, is_last: bool) -> nn.Module:
        # the last layer keeps its normalisation and activation, as UNet's bottom layer does
        return super()._get_layer(in_channels, out_channels, strides, False)

    def _get_final_layer(self, in_shape: Sequence[int]) -> nn.Module:
        pool = (nn.AdaptiveAvgPool2d if self.dimensions == 2 else nn.AdaptiveAvgPool3d)(self.pool_size)
        features = in_shape[0] * self.pool_size**self.dimensions
        return nn.Sequential(
            pool, nn.Flatten(), nn.Dropout(self.head_dropout), nn.Linear(features, math.prod(self.out_shape))
        )


def unet_encoder_prefixes(levels: int) -> list[str]:
    """State-dict prefixes of a MONAI ``UNet``'s encoder layers, top to bottom, for ``levels`` channels.

    ``UNet`` nests each level in a ``SkipConnection``: level ``i``'s down layer is the first module of
    ``i`` nested ``submodule``s; the bottom layer is the innermost ``submodule`` itself.
    """
    return [f"model.{'1.submodule.' * i}0." for i in range(levels - 1)] + [
        f"model.{'1.submodule.' * (levels - 1)}"
    ]


def load_unet_encoder(network: ImageLevelNet, checkpoint: str | os.PathLike | None) -> int:
    """Copy the encoder of the U-Net saved in ``checkpoint`` into ``network``; returns the tensors copied
    (0 when ``checkpoint`` is switched off: ``false``, ``None``).

    The checkpoint is a bundle's ``model.pt`` (weights under ``"model"``) or a bare state dict. A U-Net
    whose encoder differs from ``network``'s (other channels or levels) is refused with one line.
    """
    if switched_off(checkpoint):
        return 0
    from sonomuscle.checkpoints import read_checkpoint

    saved = read_checkpoint(checkpoint)
    state = saved.get("model", saved)
    target = network.state_dict()
    copied = {}
    for level, prefix in enumerate(unet_encoder_prefixes(len(network.channels))):
        layer = f"net.layer_{level}."
        source = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
        wanted = {key[len(layer) :]: value for key, value in target.items() if key.startswith(layer)}
        if source.keys() != wanted.keys() or any(source[k].shape != wanted[k].shape for k in wanted):
            raise InputError(
                checkpoint,
                f"its U-Net encoder does not match this network at level {level} "
                f"(channels {list(network.channels)}): give the segmentation bundle's channels, or "
                "--pretrained_encoder false to start from random weights",
            )
        copied |= {layer + key: value for key, value in source.items()}
    network.load_state_dict({**target, **copied})
    logger.info(f"encoder initialised from {checkpoint} ({len(copied)} tensors)")
    return len(copied)
