"""Benchmark ``sonomuscle measure`` end to end against a plain-MONAI reference pipeline, same machine, same run.

Inputs: a phantom cine loop (``architecture2d-sequence``, 512×512, H.264) and a folder of 512×512 phantom
images. ``measure`` runs as users run it (shipped weights, measures, flags, overlays, spreadsheet,
report), timed from the call to its return. The reference is written the way the MONAI tutorials write
inference: load, scale, resize to the network size, the same UNet with the same weights, resize back,
threshold, save each mask as PNG, one image at a time under ``torch.no_grad()``; video frames come from
the same decoder. Each side runs in a process of its own, ``measure`` with the OpenMP setting the
``sonomuscle measure`` command makes (``OMP_WAIT_POLICY=PASSIVE``), the reference with torch's default.
Prints frames/s of each and their ratio (> 1: ``measure`` is faster), and of ``measure`` without
overlays and without mirror averaging (``--no-mirror``). ``measure`` runs the network in bfloat16 where the CPU has bfloat16 instructions (its ``amp``);
on such CPUs the reference is also timed under bfloat16 autocast, to show what that alone gives it.

    python pipelines/benchmarks/bench_measure.py [--frames 120] [--images 48] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from monai.networks.nets import UNet
from monai.transforms import AsDiscrete, LoadImage, Resize, SaveImage, ScaleIntensity
from PIL import Image

from sonomuscle.data.frames import read_frames
from sonomuscle.data.phantoms.architecture2d import make_phantom
from sonomuscle.data.phantoms.architecture2d_sequence import write_dataset as write_loops
from sonomuscle.inferers import native_bf16
from sonomuscle.measure import measure
from sonomuscle.workflows import bundle_dir

SIDES = ("reference", "reference-bf16", "measure", "measure-no-overlay", "measure-no-mirror")
NETWORK_SIZE = (256, 256)
CHANNELS = (16, 32, 64, 128, 256)


def phantom_inputs(work: Path, frames: int, images: int) -> tuple[Path, Path]:
    """A cine loop and a folder of images, made once per work folder."""
    loop = work / "loop" / "loop_000.mp4"
    if not loop.is_file():
        write_loops(work / "loop", 1, seed=0, n_frames=frames)
    folder = work / "images"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        for i in range(images):
            phantom = make_phantom(np.random.default_rng([1, i]), shape=(512, 512), spacing=0.1)
            Image.fromarray(np.round(phantom.image * 255).astype(np.uint8).T).save(
                folder / f"image_{i:03d}.png"
            )
    return loop, folder


class Reference:
    """The tutorial pipeline: one image at a time, every step a separate MONAI array transform."""

    def __init__(self, out: Path, bf16: bool = False) -> None:
        self.precision = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
        self.network = UNet(2, 1, 2, CHANNELS, (2, 2, 2, 2), num_res_units=2, norm="batch").eval()
        weights = torch.load(bundle_dir("muscle_architecture_2d") / "models" / "model.pt", weights_only=True)
        self.network.load_state_dict(weights["model"])
        self.load = LoadImage(image_only=True, ensure_channel_first=True)
        self.scale, self.resize = ScaleIntensity(), Resize(NETWORK_SIZE)
        self.threshold = AsDiscrete(threshold=0.5)
        self.savers = [
            SaveImage(out, output_postfix=name, output_ext=".png", output_dtype=np.uint8, scale=255,
                      separate_folder=False, resample=False, print_log=False)
            for name in ("aponeurosis", "fascicle")
        ]  # fmt: skip

    def run(self, items: Iterator[Path | torch.Tensor]) -> int:
        """Images (paths, loaded here) or decoded frames through the pipeline; returns how many."""
        n = 0
        with torch.no_grad(), self.precision:
            for item in items:
                image = self.load(item) if isinstance(item, Path) else item
                logits = self.network(self.resize(self.scale(image))[None])[0].float()
                masks = self.threshold(Resize(image.shape[1:])(torch.sigmoid(logits)))
                for saver, mask in zip(self.savers, masks, strict=True):
                    saver(mask[None], meta_data=image.meta | {"patch_index": n})
                n += 1
        return n


def timed(step) -> tuple[float, object]:
    start = time.perf_counter()
    result = step()
    return time.perf_counter() - start, result


def run_side(side: str, work: Path, frames: int, images: int) -> dict[str, float]:
    """Frames/s of one side (``reference``, ``measure``, ``measure-no-overlay`` or ``measure-no-mirror``) on
    both inputs."""
    loop, folder = phantom_inputs(work, frames, images)
    cases = {
        "phantom video": (loop, lambda: read_frames(loop)),
        "512×512 folder": (folder, lambda: iter(sorted(folder.glob("*.png")))),
    }
    first = sorted(folder.glob("*.png"))[:1]  # start-up (imports, first call) is not timed
    if side.startswith("reference"):
        Reference(work / side, bf16=side.endswith("bf16")).run(iter(first))
    else:
        measure(first, work / side / "warm-up", spacing=0.1)
    options = {"overlays": side != "measure-no-overlay", "mirror": side != "measure-no-mirror"}
    fps = {}
    for name, (path, items) in cases.items():
        if side.startswith("reference"):
            reference = Reference(work / side, bf16=side.endswith("bf16"))
            seconds, n = timed(lambda items=items, reference=reference: reference.run(items()))
        else:
            out = work / side / path.stem
            seconds, _ = timed(lambda p=path, o=out: measure([p], o, spacing=0.1, **options))
            n = frames if path == loop else images
        fps[name] = n / seconds
    return fps


def in_process(side: str, work: Path, frames: int, images: int) -> dict[str, float]:
    """``run_side`` in a fresh Python, with the environment ``sonomuscle measure`` runs in."""
    env = dict(os.environ)
    if side.startswith("measure"):
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    command = [
        sys.executable,
        __file__,
        "--side",
        side,
        "--work",
        str(work),
        "--frames",
        str(frames),
        "--images",
        str(images),
    ]
    result = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120, help="frames of the phantom loop")
    parser.add_argument("--images", type=int, default=48, help="512×512 phantom images in the folder")
    parser.add_argument("--work", type=Path, help="folder for inputs (kept) and outputs")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # one side, in this process
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_measure_"))
    if args.side:
        print(json.dumps(run_side(args.side, work, args.frames, args.images)))
        return
    phantom_inputs(work, args.frames, args.images)
    sides = SIDES if native_bf16() else tuple(s for s in SIDES if s != "reference-bf16")
    fps = {side: in_process(side, work, args.frames, args.images) for side in sides}
    print(f"{os.cpu_count()} CPU(s), torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, reference in fps["reference"].items():
        ours, bare, plain = (
            fps[side][name] for side in ("measure", "measure-no-overlay", "measure-no-mirror")
        )
        frames = args.frames if name == "phantom video" else args.images
        print(
            f"{name}: {frames} frames | measure {ours:.1f} frames/s end to end | reference {reference:.1f} "
            f"frames/s | ratio {ours / reference:.2f} | measure without overlays {bare:.1f} frames/s "
            f"(ratio {bare / reference:.2f}) | without mirror averaging {plain:.1f} frames/s (ratio "
            f"{plain / reference:.2f})"
        )
        if "reference-bf16" in fps:  # what measure's mixed precision alone gives the tutorial pipeline
            bf16 = fps["reference-bf16"][name]
            print(f"  reference in bfloat16 {bf16:.1f} frames/s | measure / it {ours / bf16:.2f}")


if __name__ == "__main__":
    main()
