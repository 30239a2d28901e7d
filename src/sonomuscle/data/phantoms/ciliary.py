"""Ultrasound-biomicroscopy phantom of the ciliary muscle.

In a meridional UBM section the ciliary muscle is a wedge under the sclera: thickest at the scleral spur,
tapering posteriorly. The phantom sweeps that triangle along a gently curved arc of the ciliary ring, so
the B-scans (X–Y planes) show the triangle and the elevation axis (Z) follows the ring. Around it: water
bath, conjunctiva, the hyperechoic sclera running into the cornea, the iris root and the ciliary processes.
The echogenicity map goes through ``physics.simulate_bmode`` at a UBM centre frequency (50 MHz).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sonomuscle.data.phantoms.dataset import Case, write_volume_dataset
from sonomuscle.data.phantoms.physics import simulate_bmode

SHAPE = (80, 80, 64)
SPACING = (0.05, 0.05, 0.08)  # mm: lateral, depth (axial), elevation
CENTRE_FREQUENCY_MHZ = 50.0

# echogenicity (relative backscatter amplitude, 1 brightest): through 50 dB of log compression, fluids at
# 0.002 are black and the muscle (0.15) sits ~10 dB below the ciliary processes and iris above and beside it
_WATER, _FLUID = 0.002, 0.002
_CONJUNCTIVA, _SCLERA, _CORNEA, _IRIS, _PROCESSES, _MUSCLE = 0.3, 1.0, 0.7, 0.5, 0.5, 0.15


def make_case(rng: np.random.Generator) -> Case:
    """One ciliary-muscle volume with random wedge size, sclera depth and tilt, and ring curvature."""
    x, y, z = (np.arange(n, dtype=np.float32) * s for n, s in zip(SHAPE, SPACING, strict=True))
    x, y, z = np.meshgrid(x, y, z, indexing="ij")
    ring_radius = rng.uniform(5.5, 6.5)
    zc = z.max() / 2 + rng.uniform(-0.5, 0.5)
    xc = -ring_radius + rng.uniform(1.0, 1.5)  # scleral spur 1–1.5 mm from the left edge
    r = np.hypot(x - xc, z - zc)
    u = r - ring_radius  # meridional position, 0 at the scleral spur, posterior > 0
    theta = np.arctan2(z - zc, x - xc)

    depth0, tilt = rng.uniform(0.5, 0.9), rng.uniform(0.15, 0.35)
    sclera_top = depth0 + tilt * u - np.where(u < 0, rng.uniform(0.1, 0.25) * u**2, 0.0)
    sclera_bottom = sclera_top + rng.uniform(0.35, 0.55)
    # wedge: thickest at the spur, varying gently around the ring, zero at its posterior tip
    length = rng.uniform(2.0, 2.6)
    h_max = rng.uniform(0.5, 0.85) * (
        1 + 0.12 * np.sin(rng.uniform(4, 10) * theta + rng.uniform(0, 2 * np.pi))
    )
    taper = rng.uniform(0.8, 1.3)
    along = np.clip(u / length, 0.0, 1.0)
    muscle_thickness = np.where((u >= 0) & (u <= length), h_max * (1 - along) ** taper, 0.0)
    below_sclera = y - sclera_bottom
    muscle = (below_sclera >= 0) & (below_sclera < muscle_thickness)

    echo = np.full(SHAPE, _FLUID, dtype=np.float32)
    echo[y < sclera_top - 0.2] = _WATER
    echo[(y >= sclera_top - 0.2) & (y < sclera_top)] = _CONJUNCTIVA
    wall = (y >= sclera_top) & (y < sclera_bottom)
    echo[wall] = np.where(u[wall] < -0.3, _CORNEA, _SCLERA)
    iris_depth = sclera_bottom + 0.3 * h_max
    echo[(u < 0) & (u > -2.0) & (np.abs(y - iris_depth) < 0.12 * (1 - u / 2.0))] = _IRIS
    # ~70 radial folds around the ring hang under the wedge
    processes_depth = below_sclera - muscle_thickness
    folds = 0.1 + 0.25 * (0.5 + 0.5 * np.sin(70 * theta + rng.uniform(0, 2 * np.pi)))
    echo[(u >= -0.1) & (u < 0.7 * length) & (processes_depth >= 0) & (processes_depth < folds)] = _PROCESSES
    # meridional fibre bundles: faint striations across the wedge
    striation = 0.08 * (np.sin(2 * np.pi * below_sclera / rng.uniform(0.1, 0.16)) > 0.6)
    echo[muscle] = _MUSCLE + striation[muscle]

    image = simulate_bmode(echo, SPACING, rng, depth_axis=1, centre_frequency_mhz=CENTRE_FREQUENCY_MHZ)
    label = muscle.astype(np.uint8)
    voxel_mm3 = float(np.prod(SPACING))
    return Case(image, label, {"ciliary_muscle_volume_mm3": int(label.sum()) * voxel_mm3})


def write_dataset(out: str | Path, n: int, seed: int) -> Path:
    """Write ``n`` ciliary-muscle phantoms under ``out``; returns the datalist path."""
    return write_volume_dataset(out, n, seed, make_case, SPACING, "ciliary3d phantoms")
