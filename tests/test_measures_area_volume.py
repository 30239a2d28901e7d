"""Area, volume, echo intensity and local thickness against exact answers on drawn shapes."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from sonomuscle.errors import InputError
from sonomuscle.measures.area import area, echo_intensity, volume
from sonomuscle.measures.thickness import local_thickness, thickness_summary


def test_area_volume_and_echo_intensity_are_exact():
    mask = np.zeros((50, 40), np.uint8)
    mask[10:30, 5:20] = 1
    assert area(mask, (0.2, 0.3)) == pytest.approx(20 * 15 * 0.06)
    assert area(mask, None) == 300
    box = np.zeros((20, 30, 10), bool)
    box[2:12, 5:25, 1:4] = True
    assert volume(box, (0.5, 0.25, 2.0)) == pytest.approx(10 * 20 * 3 * 0.25)
    image = np.random.default_rng(0).integers(0, 255, mask.shape).astype(float)
    image[mask == 1] = 87.0
    assert echo_intensity(image, mask) == 87.0
    assert math.isnan(echo_intensity(image, np.zeros_like(mask)))
    with pytest.raises(InputError, match="3D mask"):
        volume(mask, (1.0, 1.0))
    with pytest.raises(InputError, match="spacing"):
        area(mask, (1.0, -1.0, 1.0))


def _inside(lt: np.ndarray, margin: int) -> np.ndarray:
    """Values away from the array's edges, where a slab is cut and its thickness is not defined."""
    core = tuple(slice(margin, -margin) for _ in lt.shape)
    values = lt[core]
    return values[np.isfinite(values)]


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8])
def test_axis_aligned_slab_measures_its_voxel_count(n):
    slab = np.zeros((24, 24, 24), bool)
    slab[:, 10 : 10 + n, :] = True
    lt = local_thickness(slab, (0.5, 0.8, 0.5))
    assert np.isnan(lt[~slab]).all()
    assert np.abs(_inside(lt, 6) - n * 0.8).max() <= 0.4  # half a voxel along the slab's normal
    flat = local_thickness(slab[:, :, 0], None)  # the same in 2D, in pixels
    assert np.abs(_inside(flat, 6) - n).max() <= 0.5


@pytest.mark.parametrize("normal", [(1, 1, 0), (1, 2, 3), (3, 10, 2)])
def test_oblique_slab(normal):
    """A slab whose normal is the lattice direction ``normal`` (integers) holds whole lattice planes,
    ``1 / |normal|`` apart: n planes measure n plane spacings, as n voxels do for an axis-aligned slab."""
    norm = np.linalg.norm(normal)
    grid = np.indices((40, 40, 40)) - 20
    plane = np.tensordot(np.asarray(normal), grid, axes=1)  # integer plane index
    for thickness in (3.0, 5.5):
        half = math.floor(thickness / 2 * norm)
        truth = (2 * half + 1) / norm
        lt = local_thickness(np.abs(plane) <= half, None)
        assert np.median(_inside(lt, 10)) == pytest.approx(truth, abs=0.5)


def test_spherical_shell_anisotropic():
    step = np.array([0.4, 0.5, 0.6])
    grid = (np.indices((70, 56, 48)).T * step).T
    radius = np.linalg.norm(grid - (grid.reshape(3, -1).max(axis=1) / 2)[:, None, None, None], axis=0)
    shell = (radius >= 9.0) & (radius < 12.0)  # 3 mm, 5–7.5 voxels
    summary = thickness_summary(shell, tuple(step))
    assert summary["units"] == "mm"
    assert summary["mean"] == pytest.approx(3.0, abs=0.25)  # half the mean voxel size
    assert summary["median"] == pytest.approx(3.0, abs=0.25)


def _eccentric_shell_truth(shape, centre_out, radius_out, centre_in, radius_in):
    """A shell between two non-concentric spheres, whose thickness varies smoothly round it.

    Its largest inscribed balls touch both spheres, so their centres lie on an ellipsoid of revolution
    with the sphere centres as foci (distances summing to ``radius_in + radius_out``); a wall voxel's
    local thickness is the largest diameter among those balls that contain it — found here by sampling
    that ellipse densely in the voxel's half-plane through the axis.
    """
    grid = np.indices(shape).astype(float)
    axis = centre_in - centre_out
    eccentricity = np.linalg.norm(axis)
    axis /= eccentricity
    rel = np.moveaxis(grid, 0, -1) - centre_out
    along = rel @ axis
    across = np.linalg.norm(rel - along[..., None] * axis, axis=-1)
    wall = (np.linalg.norm(rel - eccentricity * axis, axis=-1) >= radius_in) & (
        np.linalg.norm(rel, axis=-1) < radius_out
    )
    # ellipse with foci at 0 and ``eccentricity`` on the axis, half major axis (r_in + r_out) / 2
    major = (radius_in + radius_out) / 2
    minor = math.sqrt(major**2 - (eccentricity / 2) ** 2)
    angle = np.linspace(0, math.pi, 500)
    ball_along = eccentricity / 2 + major * np.cos(angle)
    ball_across = minor * np.sin(angle)
    ball_radius = np.hypot(ball_along - eccentricity, ball_across) - radius_in
    dist = np.hypot(along[wall][:, None] - ball_along, across[wall][:, None] - ball_across)
    truth = np.where(dist <= ball_radius + 0.05, 2 * ball_radius, 0).max(axis=1)  # 0.05: the sampling
    return wall, truth


def test_shell_of_varying_thickness_matches_the_exact_map():
    centre = np.array([24.0, 24.0, 24.0])
    wall, truth = _eccentric_shell_truth((48, 48, 48), centre, 20.0, centre + np.array([0.0, 1.2, 1.6]), 14.0)
    assert 3.9 < truth.min() < 4.5 and truth.max() > 7.5  # from 4 to 8 voxels round the shell
    measured = local_thickness(wall, None)[wall]
    error = measured - truth
    assert abs(error.mean()) <= 0.3 and np.median(np.abs(error)) <= 0.3
    assert np.percentile(np.abs(error), 90) <= 0.75  # nine voxels in ten within about half a voxel


def test_bladder_sized_wall_takes_seconds():
    grid = np.indices((96, 96, 96)) - 47.5
    radius = np.linalg.norm(grid, axis=0)
    wall = (radius >= 30) & (radius < 40)  # 10 voxels thick
    start = time.perf_counter()
    lt = local_thickness(wall, (0.5, 0.5, 0.5))
    assert time.perf_counter() - start < 20
    assert np.nanmedian(lt) == pytest.approx(5.0, abs=0.25)


def test_empty_and_bad_masks():
    assert np.isnan(local_thickness(np.zeros((8, 8), bool), None)).all()
    assert math.isnan(thickness_summary(np.zeros((8, 8, 8), bool), (1.0, 1.0, 1.0))["mean"])
    with pytest.raises(InputError, match="2D or 3D"):
        local_thickness(np.ones(8, bool), None)
