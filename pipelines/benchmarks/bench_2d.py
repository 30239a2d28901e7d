"""Benchmark muscle_architecture_2d on this machine: inference throughput and the CacheDataset speed-up.

Prints inference images/s on 512×512 B-mode images (batch 1 and batched) and training iterations/s with the
bundle's CacheDataset against a plain Dataset running the same transforms, as a ratio. Everything comes from
the bundle's own train.json, so the numbers describe what users run.

    python pipelines/benchmarks/bench_2d.py [--device cuda] [--batch 8] [--iterations 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from sonomuscle.data.phantoms import write_phantom_dataset
from sonomuscle.workflows import bundle_dir

BUNDLE = "muscle_architecture_2d"


def timed_rate(step: Callable[[], object], iterations: int, warmup: int = 2) -> float:
    """Calls of ``step`` per second after ``warmup`` untimed calls."""
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    return iterations / (time.perf_counter() - start)


def bundle_parser(datalist: Path | None = None, **overrides: object) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(bundle_dir(BUNDLE) / "configs" / "train.json")
    parser["bundle_root"] = str(bundle_dir(BUNDLE))
    if datalist is not None:
        parser["datalist"] = str(datalist)
    for key, value in overrides.items():
        parser[key] = value
    return parser


def inference_rate(device: torch.device, batch: int, iterations: int, amp: bool) -> float:
    """Images/s of the bundle's network on 512×512 inputs (network forward only, no I/O)."""
    network = bundle_parser(device=device).get_parsed_content("network").eval()
    images = torch.rand(batch, 1, 512, 512, device=device)

    def forward() -> None:
        with torch.inference_mode(), torch.autocast(device.type, enabled=amp):
            network(images)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return batch * timed_rate(forward, iterations)


def training_rate(datalist: Path, device: torch.device, iterations: int, cached: bool) -> float:
    """Training iterations/s (data loading + forward + backward) with the bundle's data pipeline."""
    parser = bundle_parser(datalist, device=device, num_workers=0)
    if not cached:
        parser["train#dataset"] = {
            "_target_": "Dataset",
            "data": parser["train#dataset#data"],
            "transform": "@train#preprocessing",
        }
    loader = parser.get_parsed_content("train#dataloader")
    network = parser.get_parsed_content("network").train()
    loss_fn = parser.get_parsed_content("loss")
    optimizer = parser.get_parsed_content("optimizer")
    batches = _cycle(loader)

    def step() -> None:
        batch = next(batches)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(network(batch["image"].to(device)), batch["label"].to(device))
        loss.backward()
        optimizer.step()

    return timed_rate(step, iterations)


def _cycle(loader):
    while True:
        yield from loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--phantoms", type=int, default=24)
    args = parser.parse_args()
    device = torch.device(args.device)
    amp = device.type == "cuda"

    single = inference_rate(device, 1, args.iterations, amp)
    batched = inference_rate(device, args.batch, max(2, args.iterations // 2), amp)
    print(f"device {device} ({torch.get_num_threads()} threads), amp={amp}")
    print(f"inference 512x512, batch 1:  {single:7.2f} images/s")
    print(
        f"inference 512x512, batch {args.batch}: {batched:7.2f} images/s  (x{batched / single:.2f} vs batch 1)"
    )

    with tempfile.TemporaryDirectory() as tmp:
        datalist = write_phantom_dataset("architecture2d", Path(tmp), args.phantoms, seed=0)
        plain = training_rate(datalist, device, args.iterations, cached=False)
        cached = training_rate(datalist, device, args.iterations, cached=True)
    print(f"training 256x256, plain Dataset: {plain:6.2f} it/s")
    print(f"training 256x256, CacheDataset:  {cached:6.2f} it/s  (x{cached / plain:.2f} vs plain Dataset)")


if __name__ == "__main__":
    main()
