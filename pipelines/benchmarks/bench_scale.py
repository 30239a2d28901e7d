"""Throughput and peak memory of ``sonomuscle measure`` over long recordings and of ``sonomuscle evaluate`` over
large cohorts: per item both should stay flat as the count grows.

Recordings: a 512×512 phantom cine loop of 100 frames (``architecture2d-sequence``), played over and over
into H.264 videos of each length asked for. Cohorts: architecture mask pairs (the reference and the same
moved by one pixel, so every measure has work) under as many names as asked for. Each size runs in a fresh
process, so the peak resident memory (``ru_maxrss`` of that process and of its largest child: the
DataLoader worker and the measuring process) is its own. Prints per size the items, seconds, items/s and
peak memory, the items/s beyond the smallest size (the start-up, paid once, taken out), and each size's
marginal items/s and peak memory as ratios to those of the first size above the smallest.

    python pipelines/benchmarks/bench_scale.py [--frames 100 2000 20000] [--cases 100 2000] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

BASE_FRAMES = 100
DISTINCT_CASES = 20


class Repeated(Sequence):
    """``items`` played over and over up to ``length``, without holding the copies."""

    def __init__(self, items: Sequence, length: int) -> None:
        self.items, self.length = items, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.length))]
        if not -self.length <= index < self.length:
            raise IndexError(index)
        return self.items[index % len(self.items)]


def recording(work: Path, frames: int) -> Path:
    """A video of ``frames`` frames: the base phantom loop repeated."""
    from sonomuscle.data.frames import read_frames
    from sonomuscle.data.phantoms.architecture2d_sequence import write_dataset, write_video

    path = work / f"loop_{frames}.mp4"
    if not path.is_file():
        base = work / "base" / "loop_000.mp4"
        if not base.is_file():
            write_dataset(work / "base", 1, seed=0, n_frames=BASE_FRAMES)
        images = [np.asarray(frame[0]).astype(np.uint8) for frame in read_frames(base)]
        write_video(path, Repeated(images, frames), fps=30)
    return path


def cohort(work: Path, cases: int) -> tuple[Path, Path]:
    """``cases`` predicted/reference aponeurosis mask pairs, as ``sonomuscle evaluate`` pairs them."""
    from sonomuscle.data.phantoms.architecture2d import make_phantom

    root = work / f"cohort_{cases}"
    pred, ref = root / "pred", root / "ref"
    if not ref.is_dir():
        pred.mkdir(parents=True)
        ref.mkdir(parents=True)
        masks = [
            (make_phantom(np.random.default_rng([2, i])).aponeurosis > 0).astype(np.uint8) * 255
            for i in range(DISTINCT_CASES)
        ]
        for i in range(cases):
            mask = masks[i % DISTINCT_CASES]
            Image.fromarray(np.ascontiguousarray(mask.T)).save(ref / f"case_{i:05d}.png")
            moved = np.roll(mask, 1, axis=0)
            Image.fromarray(np.ascontiguousarray(moved.T)).save(pred / f"case_{i:05d}_aponeurosis.png")
    return pred, ref


def child(kind: str, count: int, work: Path) -> None:
    """One size, in this fresh process: prints items, seconds and peak memory as JSON."""
    from sonomuscle.cli import main

    out = Path(tempfile.mkdtemp(dir=work))
    if kind == "frames":
        arguments = ["measure", str(recording(work, count)), "--out", str(out), "--no-overlay"]
    else:
        pred, ref = cohort(work, count)
        arguments = ["evaluate", "--pred", str(pred), "--ref", f"aponeurosis={ref}", "--out", str(out)]
    start = time.perf_counter()
    code = main(arguments)
    seconds = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        json.dumps({"code": code, "items": count, "seconds": seconds, "peak_mb": own, "child_mb": children})
    )


def measure_sizes(kind: str, counts: list[int], work: Path) -> None:
    print(
        f"\n{kind}: items  seconds  items/s  beyond first  peak MB (largest child MB)  ratio beyond  ratio peak"
    )
    results = []
    for count in counts:
        if kind == "frames":
            recording(work, count)  # made before timing
        else:
            cohort(work, count)
        done = subprocess.run(
            [sys.executable, __file__, "--child", kind, str(count), "--work", str(work)],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        first, now = results[0], results[-1]
        beyond = (
            (now["items"] - first["items"]) / (now["seconds"] - first["seconds"]) if len(results) > 1 else 0
        )
        reference = results[1] if len(results) > 1 else now
        reference_beyond = (
            (reference["items"] - first["items"]) / (reference["seconds"] - first["seconds"]) if beyond else 0
        )
        print(
            f"{kind}: {now['items']:6d}  {now['seconds']:7.1f}  {now['items'] / now['seconds']:7.1f}  "
            f"{beyond:12.1f}  {now['peak_mb']:7.0f} ({now['child_mb']:.0f})  "
            f"{beyond / reference_beyond if beyond else float('nan'):12.2f}  "
            f"{now['peak_mb'] / first['peak_mb']:10.2f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="*", default=[100, 2000, 20000])
    parser.add_argument("--cases", type=int, nargs="*", default=[100, 2000])
    parser.add_argument(
        "--work", type=Path, help="keep inputs here between runs (default: a temporary folder)"
    )
    parser.add_argument("--child", nargs=2, metavar=("KIND", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    if args.child:
        child(args.child[0], int(args.child[1]), work)
        return
    if args.frames:
        measure_sizes("frames", args.frames, work)
    if args.cases:
        measure_sizes("cases", args.cases, work)


if __name__ == "__main__":
    main()
