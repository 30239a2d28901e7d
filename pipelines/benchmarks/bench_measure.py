"""Benchmark ``sonomuscle measure`` end to end against a plain-MONAI reference pipeline, same machine, same run.

Inputs: a phantom cine loop (``architecture2d-sequence``, 512×512, H.264) and a folder of 512×512 phantom
images. ``measure`` runs as users run it (shipped weights, measures, flags, overlays, spreadsheet,
report), timed from the call to its return. The reference is written the way the MONAI tutorials write
inference: load, scale, resize to the network size, the same UNet with the same weights, resize back,
threshold, save each mask as PNG, one image at a time under ``torch.no_grad()``; video frames come from
the same decoder. Prints frames/s of each and their ratio (> 1: ``measure`` is faster).

    python pipelines/benchmarks/bench_measure.py [--frames 120] [--images 48] [--work DIR]
"""

from __future__ import annotations

import argparse
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
from sonomuscle.measure import measure
from sonomuscle.workflows import bundle_dir

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

    def __init__(self, out: Path) -> None:
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
        with torch.no_grad():
            for item in items:
                image = self.load(item) if isinstance(item, Path) else item
                logits = self.network(self.resize(self.scale(image))[None])[0]
                masks = self.threshold(Resize(image.shape[1:])(torch.sigmoid(logits)))
                for saver, mask in zip(self.savers, masks, strict=True):
                    saver(mask[None], meta_data=image.meta | {"patch_index": n})
                n += 1
        return n


def timed(step) -> tuple[float, object]:
    start = time.perf_counter()
    result = step()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120, help="frames of the phantom loop")
    parser.add_argument("--images", type=int, default=48, help="512×512 phantom images in the folder")
    parser.add_argument("--work", type=Path, help="folder for inputs (kept) and outputs")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_measure_"))
    loop, folder = phantom_inputs(work, args.frames, args.images)
    images = sorted(folder.glob("*.png"))
    cases = {
        "phantom video": (lambda: read_frames(loop), [loop]),
        "512×512 folder": (lambda: iter(images), [folder]),
    }
    for name, (source, paths) in cases.items():
        ref_s, n = timed(lambda source=source: Reference(work / "reference").run(source()))
        ours_s, _ = timed(lambda paths=paths: measure(paths, work / "measure" / paths[0].stem, spacing=0.1))
        ref_fps, ours_fps = n / ref_s, n / ours_s
        print(
            f"{name}: {n} frames | measure {ours_fps:.1f} frames/s end to end | "
            f"reference {ref_fps:.1f} frames/s | ratio {ours_fps / ref_fps:.2f}"
        )


if __name__ == "__main__":
    main()
