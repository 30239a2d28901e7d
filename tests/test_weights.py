"""The shipped weights: listed with their hashes in large_files.yml, loadable the safe way, same network as
the inference config builds, and TorchScript that computes what the checkpoint does."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from monai.bundle import ConfigParser

from sonomuscle.networks import load_unet_encoder
from sonomuscle.weights import ENCODER, md5_of, publish_encoder, publish_weights

REPO = Path(__file__).resolve().parents[1]
BUNDLES = sorted(p.parent.parent.name for p in (REPO / "bundles").glob("*/configs/metadata.json"))


def _network(bundle: Path) -> tuple[torch.nn.Module, ConfigParser]:
    parser = ConfigParser()
    parser.read_config(bundle / "configs" / "inference.json")
    parser["bundle_root"] = str(bundle)
    return parser.get_parsed_content("network_def").eval(), parser


@pytest.mark.parametrize("name", BUNDLES)
def test_shipped_weights_match_large_files_and_the_inference_network(name):
    bundle = REPO / "bundles" / name
    listed = yaml.safe_load((bundle / "large_files.yml").read_text())["large_files"]
    encoder = {ENCODER} if (bundle / ENCODER).is_file() else set()
    assert {e["path"] for e in listed} == {"models/model.pt", "models/model.ts", *encoder}
    for entry in listed:
        assert md5_of(bundle / entry["path"]) == entry["hash_val"], (
            f"{entry['path']} changed since it was listed"
        )

    checkpoint = torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
    network, parser = _network(bundle)
    network.load_state_dict(checkpoint["model"])  # strict: the shipped weights fit the default network
    if "trained_channels" in checkpoint:  # multi-label bundles record it
        assert checkpoint["trained_channels"]["trained"].all(), (
            "every output channel of a shipped model is trained"
        )

    scripted = torch.jit.load(str(bundle / "models" / "model.ts"), map_location="cpu")
    x = torch.rand(1, 1, *parser["spatial_size"])
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), network(x), rtol=1e-4, atol=1e-4)


def test_publish_weights_keeps_only_the_network_and_its_record(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(REPO / "bundles" / "muscle_architecture_2d" / "configs", bundle / "configs")
    network, _ = _network(bundle)
    checkpoint = tmp_path / "best.pt"
    torch.save(
        {"model": network.state_dict(), "trained_channels": {"trained": torch.tensor([True, False])}, "x": 1},
        checkpoint,
    )

    published = publish_weights(checkpoint, bundle)

    assert [p.name for p in published] == ["model.pt", "model.ts"]
    shipped = torch.load(bundle / "models" / "model.pt", weights_only=True)
    assert set(shipped) == {"model", "trained_channels"}
    listed = yaml.safe_load((bundle / "large_files.yml").read_text())["large_files"]
    assert [e["hash_val"] for e in listed] == [md5_of(p) for p in published]


def test_publish_weights_wraps_a_bare_state_dict_under_model(tmp_path):
    """Ignite saves a lone network bare (the 3D bundles' best model); the shipped file always has ``model``."""
    bundle = tmp_path / "bundle"
    shutil.copytree(REPO / "bundles" / "ciliary_muscle_3d" / "configs", bundle / "configs")
    network, _ = _network(bundle)
    torch.save(network.state_dict(), tmp_path / "best.pt")

    publish_weights(tmp_path / "best.pt", bundle)

    shipped = torch.load(bundle / "models" / "model.pt", weights_only=True)
    assert set(shipped) == {"model"} and shipped["model"].keys() == network.state_dict().keys()


@pytest.mark.parametrize("name", ["muscle_classification_2d", "muscle_state_regression_2d"])
def test_image_level_bundles_start_from_the_encoder_they_ship(name):
    """Their weights were trained from this encoder: retraining the segmentation bundle must not change it."""
    bundle = REPO / "bundles" / name
    parser = ConfigParser()
    parser.read_config(bundle / "configs" / "train.json")
    parser["bundle_root"] = str(bundle)
    assert Path(parser.get_parsed_content("pretrained_encoder")) == bundle / ENCODER
    network, _ = _network(bundle)
    assert load_unet_encoder(network, bundle / ENCODER) == sum(
        key.startswith("net.layer_") for key in network.state_dict()
    )


def test_publish_encoder_keeps_the_encoder_and_lists_it(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(REPO / "bundles" / "muscle_state_regression_2d" / "configs", bundle / "configs")
    unet, _ = _network(REPO / "bundles" / "muscle_architecture_2d")
    torch.save({"model": unet.state_dict()}, tmp_path / "unet.pt")

    encoder = publish_encoder(tmp_path / "unet.pt", bundle)

    kept = torch.load(encoder, weights_only=True)["model"]
    assert 0 < len(kept) < len(unet.state_dict()) and not any(".2." in key for key in kept)  # no decoder
    listed = yaml.safe_load((bundle / "large_files.yml").read_text())["large_files"]
    assert listed == [{"path": ENCODER, "hash_val": md5_of(encoder), "hash_type": "md5"}]
