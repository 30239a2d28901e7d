"""Sliding-window inference of the 3D bundles on volumes the size of real scans: voxels per second and peak memory.

The volumes are the bundles' own phantoms tiled (mirrored at each seam, so structures continue) up to the
size asked for, at the bundle's spacing (no resampling): by default 384 × 384 × 1000 voxels for an
ultrasound biomicroscopy scan (``ciliary_muscle_3d``) and 256 × 256 × 256 for a 3D bladder scan
(``bladder_wall_3d``). Each runs the bundle's ``inference.json`` as users do (``python -m monai.bundle
run``: loading, sliding window, postprocessing, measurements, saved label map), in a fresh process whose
peak resident memory is read after it ends. Extra ``--key value`` pairs go to the bundle (e.g.
``--sw_batch_size 8``, ``--overlap 0.5``, ``--output_device cpu``).

    python pipelines/benchmarks/bench_3d_size.py [--ciliary 384 384 1000] [--bladder 256 256 256]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from sonomuscle.workflows import bundle_command


def tiled_volume(module, size: tuple[int, int, int], folder: Path) -> Path:
    """A phantom of ``module`` mirrored and tiled to ``size`` voxels, saved as NIfTI with its spacing."""
    case = module.make_case(np.random.default_rng(0))
    image = np.asarray(case.image, dtype=np.float32)
    reps = [int(np.ceil(s / (2 * n))) for s, n in zip(size, image.shape, strict=True)]
    mirrored = image
    for axis in range(3):
        mirrored = np.concatenate([mirrored, np.flip(mirrored, axis=axis)], axis=axis)
    volume = np.tile(mirrored, reps)[: size[0], : size[1], : size[2]]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(volume), np.diag([*module.SPACING, 1.0])), path)
    return path


def run(bundle: str, volume: Path, out: Path, extra: dict[str, str]) -> tuple[float, float]:
    """Seconds and peak resident memory (GB) of the bundle's inference on the folder holding ``volume``."""
    command = bundle_command(
        bundle, ["inference"], input_dir=volume.parent, datalist="none", output_dir=out, **extra
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        print("  (peak memory not above an earlier run's: read it from that run)")
    return seconds, peak / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ciliary", type=int, nargs=3, default=[384, 384, 1000], metavar=("X", "Y", "Z"))
    parser.add_argument("--bladder", type=int, nargs=3, default=[256, 256, 256], metavar=("X", "Y", "Z"))
    args, rest = parser.parse_known_args()
    extra = dict(zip([k.lstrip("-") for k in rest[::2]], rest[1::2], strict=True))
    from sonomuscle.data.phantoms import bladder, ciliary

    work = Path(tempfile.mkdtemp(prefix="bench_3d_"))
    print("bundle              voxels       seconds  Mvoxels/s  peak GB")
    # the smaller volume first: RUSAGE_CHILDREN keeps the largest child's peak
    for bundle, module, size in sorted(
        (("bladder_wall_3d", bladder, args.bladder), ("ciliary_muscle_3d", ciliary, args.ciliary)),
        key=lambda item: int(np.prod(item[2])),
    ):
        volume = tiled_volume(module, tuple(size), work / bundle)
        seconds, peak = run(bundle, volume, work / f"{bundle}_out", extra)
        voxels = int(np.prod(size))
        label = "×".join(map(str, size))
        print(
            f"{bundle:18s}  {label:>12s}  {seconds:7.1f}  {voxels / seconds / 1e6:9.2f}  {peak:7.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
