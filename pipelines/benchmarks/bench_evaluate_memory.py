"""Peak memory of ``evaluate_folder`` for 10 vs 100 small 3D cases: streaming should keep it flat.

Each size runs in a fresh process, so ``ru_maxrss`` (the process's peak resident memory) is not carried over
from the previous run; tracemalloc's peak counts only what the evaluation itself allocates (numpy included).

    python pipelines/benchmarks/bench_evaluate_memory.py [--sizes 10 100] [--shape 64 64 32]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np


def write_cases(root: Path, n: int, shape: tuple[int, int, int], seed: int = 0) -> tuple[Path, Path]:
    """n reference/prediction pairs of two-label ellipsoids, the prediction slightly moved and resized."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    pred, ref = root / "pred", root / "ref"
    pred.mkdir()
    ref.mkdir()
    grid = np.indices(shape, dtype=np.float32)
    centre = np.array(shape, dtype=np.float32)[:, None, None, None] / 2
    affine = np.diag([0.3, 0.2, 1.0, 1.0])
    for i in range(n):
        for folder, jitter in ((ref, 0.0), (pred, 1.5)):
            offset = rng.normal(0, jitter, 3).astype(np.float32)[:, None, None, None]
            r = np.sqrt((((grid - centre - offset) / (centre * 0.6)) ** 2).sum(axis=0))
            labels = np.where(r < 0.6, 2, np.where(r < 1.0, 1, 0)).astype(np.uint8)
            nib.save(nib.Nifti1Image(labels, affine), folder / f"case{i:04d}.nii.gz")
    return pred, ref


def measure(n: int, shape: tuple[int, int, int]) -> dict:
    """Run one evaluation in this process and return its memory figures in MiB."""
    import torch

    from sonomuscle.evaluation.batch import evaluate_folder

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        pred, ref = write_cases(Path(tmp), n, shape)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        tracemalloc.start()
        evaluate_folder(pred, ref, Path(tmp) / "out")
        traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return {
        "cases": n,
        "rss_before_mib": rss_before,
        "rss_peak_mib": rss_peak,
        "traced_peak_mib": traced_peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 64, 32])
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # child process: one size
    args = parser.parse_args()
    shape = tuple(args.shape)
    if args.one is not None:
        print(json.dumps(measure(args.one, shape)))
        return

    results = []
    for n in args.sizes:
        child = [sys.executable, __file__, "--one", str(n), "--shape", *map(str, shape)]
        output = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
        r = results[-1]
        print(
            f"{n:5d} cases {shape}: peak RSS {r['rss_peak_mib']:.0f} MiB "
            f"(after imports {r['rss_before_mib']:.0f}), traced peak {r['traced_peak_mib']:.1f} MiB"
        )
    first, last = results[0], results[-1]
    print(
        f"ratio {last['cases']}/{first['cases']} cases: peak RSS ×{last['rss_peak_mib'] / first['rss_peak_mib']:.2f}, "
        f"traced peak ×{last['traced_peak_mib'] / first['traced_peak_mib']:.2f}"
    )


if __name__ == "__main__":
    main()
