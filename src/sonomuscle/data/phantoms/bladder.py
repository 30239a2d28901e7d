"""3D ultrasound phantom of the bladder: an ellipsoidal shell whose wall thickness varies smoothly.

The lumen is an ellipsoid with random semi-axes and orientation. The wall is laid on it along the surface
normal with a thickness field ``t`` (mm) that varies smoothly over the surface, 1.5–8 mm across the dataset:
a voxel belongs to the wall when its distance to the lumen is at most ``t`` at its nearest lumen point. That
nearest point's ``t`` is the voxel's true local thickness — the quantity a distance-transform local thickness
(largest inscribed sphere) measures on a smoothly varying wall — and ``truth.csv`` summarises it over the
wall voxels. Above the bladder lie skin, subcutaneous fat, fascia and abdominal muscle; around it,
perivesical fat with lobular texture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.ndimage import distance_transform_edt, gaussian_filter
from scipy.spatial.transform import Rotation

from sonomuscle.data.phantoms.dataset import Case, write_volume_dataset
from sonomuscle.data.phantoms.physics import simulate_bmode

SHAPE = (96, 104, 80)
SPACING = (0.5, 0.5, 0.5)  # mm; the thinnest wall (1.5 mm) spans 3 voxels
CENTRE_FREQUENCY_MHZ = 3.5
THICKNESS_RANGE_MM = (1.5, 8.0)
_ABDOMINAL_WALL_MM = 8.0

# echogenicity (relative backscatter amplitude): anechoic urine, a hypoechoic detrusor between the bright
# mucosa and serosa, echogenic perivesical fat; 50 dB of log compression turns these into distinct greys
_LUMEN, _WALL, _LINING, _FAT = 0.002, 0.15, 0.9, 0.45
_SKIN, _SUBCUTIS, _FASCIA, _RECTUS = 0.8, 0.2, 0.95, 0.3
# display gain: a transabdominal scan is set so the perivesical fat sits mid-grey, not near white
_GAIN_DB = -20.0


def make_case(rng: np.random.Generator) -> Case:
    """One bladder volume; labels 0 background, 1 wall, 2 lumen; truth: volumes and wall thickness."""
    grid = np.stack(
        np.meshgrid(*(np.arange(n) * s for n, s in zip(SHAPE, SPACING, strict=True)), indexing="ij"), axis=-1
    )
    extent = np.array(SHAPE) * SPACING
    variation = rng.uniform(0.1, 0.25)  # relative, around the case's mid thickness
    low, high = THICKNESS_RANGE_MM
    t_mid = rng.uniform(low / (1 - variation), high / (1 + variation))
    t_hi = t_mid * (1 + variation)
    outer = min(extent[0], extent[2], extent[1] - _ABDOMINAL_WALL_MM) / 2 - 1.0  # bounding radius that fits
    semi_axes = rng.uniform(5.0, outer - t_hi, size=3)
    reach = semi_axes.max() + t_hi + 0.5
    centre = np.array(
        [
            rng.uniform(reach, extent[0] - reach),
            rng.uniform(_ABDOMINAL_WALL_MM + reach, extent[1] - reach),
            rng.uniform(reach, extent[2] - reach),
        ]
    )
    rotation = Rotation.random(random_state=rng).as_matrix()
    local = (grid - centre) @ rotation  # coordinates in the ellipsoid's own frame
    lumen = np.sum((local / semi_axes) ** 2, axis=-1) <= 1.0

    distance, nearest = distance_transform_edt(~lumen, sampling=SPACING, return_indices=True)
    nearest_dir = local[tuple(nearest)]
    nearest_dir /= np.linalg.norm(nearest_dir, axis=-1, keepdims=True)
    thickness = t_mid * (1 + variation * _smooth_field(nearest_dir, rng))
    # a voxel is wall when its centre lies within t of the lumen surface, half a voxel beyond the lumen centres
    wall = ~lumen & (distance <= thickness + SPACING[0] / 2)

    echo = _surroundings(grid[..., 1], rng)
    echo[wall] = _WALL
    echo[wall & ((distance <= 1.5 * SPACING[0]) | (distance > thickness - SPACING[0] / 2))] = _LINING
    echo[lumen] = _LUMEN
    image = simulate_bmode(
        echo, SPACING, rng, depth_axis=1, centre_frequency_mhz=CENTRE_FREQUENCY_MHZ, gain_db=_GAIN_DB
    )

    label = np.zeros(SHAPE, dtype=np.uint8)
    label[wall] = 1
    label[lumen] = 2
    voxel_mm3 = float(np.prod(SPACING))
    wall_thickness = thickness[wall]
    return Case(
        image,
        label,
        {
            "wall_volume_mm3": int(wall.sum()) * voxel_mm3,
            "lumen_volume_mm3": int(lumen.sum()) * voxel_mm3,
            "wall_thickness_mean_mm": float(wall_thickness.mean()),
            "wall_thickness_median_mm": float(np.median(wall_thickness)),
            "wall_thickness_min_mm": float(wall_thickness.min()),
            "wall_thickness_max_mm": float(wall_thickness.max()),
        },
    )


def write_dataset(out: str | Path, n: int, seed: int) -> Path:
    """Write ``n`` bladder phantoms under ``out``; returns the datalist path."""
    return write_volume_dataset(out, n, seed, make_case, SPACING, "bladder3d phantoms")


def _smooth_field(direction: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A field in [-1, 1] over unit directions that varies once or twice around the bladder: a tilt and a wave.

    Slow on purpose: where the wall tapers fast, the largest inscribed sphere of the thick side covers the
    thin side, and the local thickness would no longer be the thickness along the normal.
    """
    tilt, wave = (v / np.linalg.norm(v) for v in rng.normal(size=(2, 3)))
    return 0.5 * (direction @ tilt) + 0.5 * np.sin(1.5 * (direction @ wave) + rng.uniform(0, 2 * np.pi))


def _surroundings(depth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Abdominal wall layers over perivesical fat with lobules (smoothed noise)."""
    lobules = gaussian_filter(rng.standard_normal(SHAPE), sigma=3.0 / SPACING[0])
    echo = (_FAT + 0.5 * lobules / (lobules.std() + 1e-6) * 0.15).astype(np.float32)
    layers = ((1.0, _SKIN), (3.5, _SUBCUTIS), (4.5, _FASCIA), (_ABDOMINAL_WALL_MM, _RECTUS))
    top = 0.0
    for bottom, value in layers:
        echo[(depth >= top) & (depth < bottom)] = value
        top = bottom
    return np.clip(echo, 0.0, 1.0)
