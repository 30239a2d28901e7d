"""bfloat16 inference on CPUs that do it natively: outputs close to float32, float32 dtype, off elsewhere,
and what the 2D bundle's ``amp`` turns on; batch norms folded into convolutions: the same outputs; mirror
averaging: a mirrored picture gets the mirrored output."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from monai.networks.nets import UNet
from torch import nn

from sonomuscle.inferers import CPUBFloat16Inferer, MirrorAveragingInferer, fold_batch_norms, native_bf16


def test_bfloat16_outputs_match_float32_where_the_cpu_has_it():
    torch.manual_seed(0)
    network = UNet(2, 1, 2, (8, 16, 32), (2, 2), num_res_units=1, norm="batch").eval()
    images = torch.rand(2, 1, 64, 64)
    inferer = CPUBFloat16Inferer()
    assert inferer.enabled == native_bf16() and not CPUBFloat16Inferer(enabled=False).enabled
    with torch.inference_mode():
        reference = torch.sigmoid(network(images))
        outputs = inferer(images, network)
    assert outputs.dtype == torch.float32
    assert (torch.sigmoid(outputs) - reference).abs().max() < 0.02


@pytest.mark.parametrize("dims", [2, 3])
def test_folded_batch_norms_give_the_same_outputs_without_norm_layers(dims):
    torch.manual_seed(0)
    network = UNet(dims, 1, 2, (4, 8, 16), (2, 2), num_res_units=2, norm="batch")
    for norm in (m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
        norm.running_mean.uniform_(-0.5, 0.5)  # trained statistics and affine, not the defaults
        norm.running_var.uniform_(0.5, 2.0)
        nn.init.uniform_(norm.weight, 0.5, 1.5)
        nn.init.uniform_(norm.bias, -0.2, 0.2)
    network.eval()
    images = torch.rand(2, 1, *[32] * dims)
    with torch.inference_mode():
        reference = network(images)
        folded = fold_batch_norms(copy.deepcopy(network))
        outputs = folded(images)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert (outputs - reference).abs().max() < 1e-4 * reference.abs().max()


@pytest.mark.parametrize("configs", [["inference"], ["train", "evaluate"]])
@pytest.mark.parametrize("amp", [None, False, "false"])
def test_the_2d_bundle_runs_bfloat16_where_the_cpu_has_it_unless_amp_is_off(configs, amp):
    """``amp`` (default on) means bfloat16 on such CPUs for inference and evaluation; the engines' own
    float16 autocast is for CUDA only; off, float32 everywhere."""
    folder = Path(__file__).resolve().parents[1] / "bundles" / "muscle_architecture_2d" / "configs"
    parser = ConfigParser()
    parser.read_config([folder / f"{name}.json" for name in configs])
    if amp is not None:
        parser["amp"] = amp
    assert parser.get_parsed_content("inferer").enabled == (native_bf16() and amp is None)
    assert parser.get_parsed_content("evaluator#amp") == (amp is None and torch.cuda.is_available())


def test_mirror_averaging_makes_any_network_mirror_equivariant():
    torch.manual_seed(0)
    network = UNet(2, 1, 2, (8, 16, 32), (2, 2), num_res_units=1, norm="batch").eval()
    images = torch.rand(2, 1, 64, 48)
    averaged, plain = (
        MirrorAveragingInferer(enabled=False),
        MirrorAveragingInferer(enabled=False, mirror=False),
    )
    with torch.inference_mode():
        assert (plain(images.flip(2), network).flip(2) - plain(images, network)).abs().max() > 1e-3
        outputs = averaged(images, network)
        assert (averaged(images.flip(2), network).flip(2) - outputs).abs().max() < 1e-5
        expected = (network(images) + network(images.flip(2)).flip(2)) / 2
    assert outputs.shape == (2, 2, 64, 48)
    assert (outputs - expected).abs().max() < 1e-5


@pytest.mark.parametrize("configs", [["inference"], ["train", "evaluate"]])
@pytest.mark.parametrize(("mirror", "expected"), [(None, True), (False, False), ("false", False)])
def test_the_2d_bundle_averages_over_the_mirror_image_unless_told_not_to(configs, mirror, expected):
    folder = Path(__file__).resolve().parents[1] / "bundles" / "muscle_architecture_2d" / "configs"
    parser = ConfigParser()
    parser.read_config([folder / f"{name}.json" for name in configs])
    if mirror is not None:
        parser["mirror_average"] = mirror
    assert parser.get_parsed_content("inferer").mirror is expected
