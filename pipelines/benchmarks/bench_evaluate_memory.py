"""Peak memory of ``evaluate_folder`` for 10 vs 100 bladder phantom cases: streaming should keep it flat.

Each size runs in a fresh process, so ``ru_maxrss`` (the process's peak resident memory) is not carried over
from the previous run; tracemalloc's peak counts only what the evaluation itself allocates (numpy included).

References are the label maps of ``sonomuscle synth --task bladder3d`` phantoms (wall and lumen, 0.5 mm),
predictions the same maps moved by one voxel: every measure (Dice, HD95, ASSD, volume, wall thickness)
has work to do.

    python pipelines/benchmarks/bench_evaluate_memory.py [--sizes 10 100]
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


def write_cases(root: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """n reference/prediction pairs: bladder phantom labels, and the same moved by one voxel laterally."""
    import nibabel as nib

    from sonomuscle.data.phantoms import bladder

    pred, ref = root / "pred", root / "ref"
    pred.mkdir()
    ref.mkdir()
    affine = np.diag([*bladder.SPACING, 1.0])
    for i in range(n):
        labels = bladder.make_case(np.random.default_rng([seed, i])).label
        for folder, volume in ((ref, labels), (pred, np.roll(labels, 1, axis=0))):
            nib.save(nib.Nifti1Image(volume, affine), folder / f"case{i:04d}.nii.gz")
    return pred, ref


def subset(root: Path, pred: Path, ref: Path, n: int) -> tuple[Path, Path]:
    """Folders holding (links to) the first ``n`` pairs, so every size evaluates the same cases."""
    folders = []
    for source in (pred, ref):
        folder = root / f"first{n}" / source.name
        folder.mkdir(parents=True)
        for path in sorted(source.iterdir())[:n]:
            (folder / path.name).symlink_to(path)
        folders.append(folder)
    return folders[0], folders[1]


def measure(pred: Path, ref: Path, out: Path) -> dict:
    """Evaluate in this (fresh) process and return its memory figures in MiB."""
    import torch

    from sonomuscle.evaluation.batch import evaluate_folder

    torch.set_num_threads(1)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    tracemalloc.start()
    summary = evaluate_folder(pred, ref, out)
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {
        "cases": summary["n_evaluated"],
        "rss_before_mib": rss_before,
        "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "traced_peak_mib": traced_peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100])
    parser.add_argument(
        "--one", nargs=3, type=Path, default=None, help=argparse.SUPPRESS
    )  # child: pred ref out
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(*args.one)))
        return

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pred, ref = write_cases(root, max(args.sizes))
        for n in args.sizes:
            pred_n, ref_n = subset(root, pred, ref, n)
            child = [sys.executable, __file__, "--one", str(pred_n), str(ref_n), str(root / f"report{n}")]
            output = subprocess.run(child, check=True, capture_output=True, text=True).stdout
            results.append(json.loads(output.strip().splitlines()[-1]))
            r = results[-1]
            print(
                f"{r['cases']:5d} bladder phantom cases: peak RSS {r['rss_peak_mib']:.0f} MiB "
                f"(after imports {r['rss_before_mib']:.0f}), traced peak {r['traced_peak_mib']:.1f} MiB"
            )
    first, last = results[0], results[-1]
    print(
        f"ratio {last['cases']}/{first['cases']} cases: peak RSS ×{last['rss_peak_mib'] / first['rss_peak_mib']:.2f}, "
        f"traced peak ×{last['traced_peak_mib'] / first['traced_peak_mib']:.2f}"
    )


if __name__ == "__main__":
    main()
