"""Publish trained weights into a bundle the Model Zoo way: ``models/model.pt``, ``model.ts``, ``large_files.yml``.

A training run's best checkpoint holds the network (bare, or beside the record of trained channels and the
classes it learned); the shipped file keeps just those, always under the key ``model``. The TorchScript
export comes from MONAI's ``ckpt_export`` with the bundle's own inference config (so it is the network
inference builds), and ``large_files.yml`` lists both with their MD5 hashes, which the Zoo's
``verify_bundle`` and ``monai.bundle download`` check.

An image-level bundle also ships the U-Net encoder its training starts from (``models/pretrained_encoder.pt``):
its weights and figures were made from that encoder, which must not change when the segmentation bundle it
came from is retrained.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
import yaml
from monai.bundle import ckpt_export

from sonomuscle.bundles_export import ENCODER, LARGE_FILES
from sonomuscle.io import atomic_path, atomic_write_text
from sonomuscle.networks import unet_encoder_prefixes

SHIPPED_KEYS = ("model", "trained_channels", "classes", "outputs")


def publish_weights(
    checkpoint: str | os.PathLike, bundle: str | os.PathLike, qc: dict | None = None
) -> list[Path]:
    """Write ``bundle/models/model.pt`` and ``model.ts`` from ``checkpoint``, and ``bundle/large_files.yml``;
    ``qc``, the model's calibrated quality-control thresholds, goes into the metadata's ``"qc"`` with it."""
    bundle = Path(bundle)
    if qc is not None:
        metadata = bundle / "configs" / "metadata.json"
        updated = {**json.loads(metadata.read_text()), "qc": qc}
        atomic_write_text(metadata, json.dumps(updated, indent=4, ensure_ascii=False) + "\n")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if "model" not in state:  # ignite saves a lone network's state dict bare
        state = {"model": state}
    weights = bundle / "models" / "model.pt"
    with atomic_path(weights) as tmp:
        torch.save({k: state[k] for k in SHIPPED_KEYS if k in state}, tmp)
    torchscript = bundle / "models" / "model.ts"
    with atomic_path(torchscript) as tmp:
        ckpt_export(
            net_id="network_def",
            filepath=str(tmp),
            ckpt_file=str(weights),
            key_in_ckpt="model",
            meta_file=str(bundle / "configs" / "metadata.json"),
            config_file=str(bundle / "configs" / "inference.json"),
            bundle_root=str(bundle),
        )
    write_large_files(bundle, _large_files(bundle))
    return [weights, torchscript]


def publish_encoder(checkpoint: str | os.PathLike, bundle: str | os.PathLike) -> Path:
    """Write the encoder of the U-Net saved in ``checkpoint`` (a segmentation bundle's ``model.pt``) to
    ``bundle/models/pretrained_encoder.pt`` for the bundle's levels (its ``channels``), and list it."""
    bundle = Path(bundle)
    levels = len(json.loads((bundle / "configs" / "inference.json").read_text())["channels"])
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = saved.get("model", saved)
    prefixes = tuple(unet_encoder_prefixes(levels))
    encoder = bundle / ENCODER
    with atomic_path(encoder) as tmp:
        torch.save({"model": {k: v for k, v in state.items() if k.startswith(prefixes)}}, tmp)
    write_large_files(bundle, _large_files(bundle))
    return encoder


def _large_files(bundle: Path) -> list[Path]:
    """The weight files ``bundle`` holds, in the order ``large_files.yml`` lists them."""
    return [bundle / name for name in LARGE_FILES if (bundle / name).is_file()]


def write_large_files(bundle: Path, files: list[Path]) -> Path:
    """``large_files.yml``: each file's path in the bundle and its MD5 hash."""
    entries = [
        {"path": f.relative_to(bundle).as_posix(), "hash_val": md5_of(f), "hash_type": "md5"} for f in files
    ]
    return atomic_write_text(
        bundle / "large_files.yml", yaml.safe_dump({"large_files": entries}, sort_keys=False)
    )


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
