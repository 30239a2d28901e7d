"""bfloat16 inference on CPUs that do it natively: outputs close to float32, float32 dtype, off elsewhere."""

from __future__ import annotations

import torch
from monai.networks.nets import UNet

from sonomuscle.inferers import CPUBFloat16Inferer, native_bf16


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
