"""B-mode image formation from an echogenicity map: speckle, point-spread function, attenuation, log compression.

The chain follows a linear pulse-echo model. Tissue is a dense field of sub-resolution scatterers with random
Gaussian amplitudes whose spread is the local echogenicity (backscatter amplitude relative to the display's
reference: unit echogenicity gives speckle of unit mean power, at the top of the dynamic range, so 0.1 shows
20 dB darker), plus sparse bright point reflectors in the brightest tissue. The field is convolved with a separable
point-spread function: along depth a Gaussian-modulated cosine at the centre frequency (the two-way RF pulse),
laterally and elevationally Gaussians whose width follows the wavelength and the aperture's f-number. The
envelope is the magnitude of the analytic signal (Hilbert transform along depth). Echoes weaken with depth
(frequency-dependent attenuation), electronic noise joins at the receiver, time-gain compensation restores the
nominal attenuation, and the envelope is log-compressed into the display's dynamic range.

The RF carrier is often finer than the pixel grid (10 MHz has a 77 µm two-way period in depth), so depth is
simulated on a grid refined until every carrier period holds several samples, and the analytic signal is read
back at the pixel centres before the lateral blur (the two commute) to keep the cost low.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.signal import fftconvolve, hilbert

from sonomuscle.errors import InputError

SPEED_OF_SOUND_MM_PER_US = 1.54  # soft tissue; mm/µs so that wavelength in mm = c / f[MHz]
_SAMPLES_PER_CARRIER_PERIOD = 4  # above Nyquist for the pulse's upper band edge
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def wavelength_mm(centre_frequency_mhz: float) -> float:
    return SPEED_OF_SOUND_MM_PER_US / centre_frequency_mhz


def axial_sigma_mm(centre_frequency_mhz: float, fractional_bandwidth: float) -> float:
    """Standard deviation (in depth) of the pulse envelope whose -6 dB spectrum spans ``bandwidth·f0``."""
    return (
        wavelength_mm(centre_frequency_mhz)
        * math.sqrt(2.0 * math.log(2.0))
        / (2.0 * math.pi * fractional_bandwidth)
    )


def beam_sigma_mm(centre_frequency_mhz: float, f_number: float) -> float:
    """Lateral (or elevational) beam width as a Gaussian: full width at half maximum ≈ wavelength × f-number."""
    return wavelength_mm(centre_frequency_mhz) * f_number / _FWHM_PER_SIGMA


def simulate_bmode(
    echogenicity: np.ndarray,
    spacing: Sequence[float],
    rng: np.random.Generator,
    *,
    depth_axis: int = 1,
    centre_frequency_mhz: float = 10.0,
    dynamic_range_db: float = 50.0,
    attenuation_db_cm_mhz: float = 0.5,
    tgc: bool = True,
    fractional_bandwidth: float = 0.6,
    f_number: float = 2.5,
    elevation_f_number: float = 4.0,
    specular_threshold: float = 0.75,
    specular_density: float = 0.03,
    specular_gain: float = 4.0,
    noise_db: float = -65.0,
    gain_db: float = 0.0,
    return_envelope: bool = False,
    stable_draws: bool = False,
) -> np.ndarray:
    """B-mode image of a 2D ``(X, Y)`` or 3D ``(X, Y, Z)`` echogenicity map, float32 in [0, 1].

    ``spacing`` is in mm per axis. Pixels with echogenicity ≥ ``specular_threshold`` hold, with probability
    ``specular_density``, a point reflector ``specular_gain`` times brighter than the local scatterers.
    ``noise_db`` is the receiver noise and ``gain_db`` the display gain, both relative to the mean echo level
    of unit echogenicity at the skin. ``return_envelope`` gives the linear envelope (before log compression,
    in units of that level) instead of the display image; the same ``rng`` state gives the same result.
    ``stable_draws`` draws every random field over the whole map, whatever it holds, so that one ``rng`` state
    gives the same scatterers and noise to maps that differ (the frames of a cine loop); off, reflector signs
    are drawn for the reflectors only, which keeps the images of earlier versions.
    """
    echo = np.asarray(echogenicity, dtype=np.float32)
    _check(echo, spacing, depth_axis)
    echo = np.moveaxis(echo, depth_axis, -1)  # depth last inside; moved back at the end
    spacing = [float(s) for s in spacing]
    spacing.append(spacing.pop(depth_axis))
    depth_mm = spacing[-1]

    # depth grid refined until the RF carrier (period λ/2 in depth, two-way) is sampled several times
    period = wavelength_mm(centre_frequency_mhz) / 2.0
    refine = max(1, math.ceil(_SAMPLES_PER_CARRIER_PERIOD * depth_mm / period))
    fine_step = depth_mm / refine

    scatterers = _scatterer_field(
        np.repeat(echo, refine, axis=-1),
        rng,
        specular_threshold,
        specular_density,
        specular_gain,
        stable_draws,
    )
    pulse = _rf_pulse(centre_frequency_mhz, fractional_bandwidth, fine_step)
    rf = fftconvolve(scatterers, pulse.reshape((1,) * (echo.ndim - 1) + (-1,)), mode="same", axes=-1)
    analytic = hilbert(rf, axis=-1)[..., refine // 2 :: refine]  # read back at the pixel centres

    for axis, f_num in zip(range(echo.ndim - 1), (f_number, elevation_f_number), strict=False):
        kernel = _gaussian_kernel(beam_sigma_mm(centre_frequency_mhz, f_num) / spacing[axis])
        analytic = fftconvolve(
            analytic, kernel.reshape([-1 if a == axis else 1 for a in range(echo.ndim)]), "same", axes=axis
        )
    # unit echogenicity's mean echo power at the skin: every stage above is linear in the scatterers
    reference = math.sqrt(
        2.0
        * float(np.sum(pulse**2))
        * _beam_power(spacing, centre_frequency_mhz, f_number, elevation_f_number)
    )

    depth = (np.arange(echo.shape[-1]) + 0.5) * depth_mm
    loss = 10.0 ** (
        -attenuation_db_cm_mhz * centre_frequency_mhz * 2.0 * depth / 10.0 / 20.0
    )  # two-way, mm → cm
    noise_rms = reference * 10.0 ** (noise_db / 20.0)
    noise = rng.standard_normal((2, *analytic.shape), dtype=np.float32) * (noise_rms / math.sqrt(2.0))
    received = analytic * loss + (noise[0] + 1j * noise[1])
    if tgc:
        received = received / loss
    envelope = np.abs(received) / reference
    if return_envelope:
        return np.moveaxis(envelope.astype(np.float32), -1, depth_axis)
    decibels = 20.0 * np.log10(np.maximum(envelope, 1e-12)) + gain_db
    image = np.clip(1.0 + decibels / dynamic_range_db, 0.0, 1.0)
    return np.moveaxis(image.astype(np.float32), -1, depth_axis)


def acoustic_shadow(
    echogenicity: np.ndarray,
    reflector: np.ndarray,
    spacing: Sequence[float],
    *,
    depth_axis: int = 1,
    attenuation_per_mm: float = 2.0,
) -> np.ndarray:
    """Dim the echogenicity below strong reflectors (bone, calcification): the beam loses
    ``exp(-attenuation_per_mm · path)`` of its amplitude after crossing ``path`` mm of reflector above a pixel.
    The reflector's own pixels keep their brightness (its surface is where the echo comes from)."""
    mask = np.asarray(reflector, dtype=bool)
    if mask.shape != np.shape(echogenicity):
        raise InputError(
            None, f"reflector mask {mask.shape} does not match echogenicity {np.shape(echogenicity)}"
        )
    path = (np.cumsum(mask, axis=depth_axis) - mask) * float(spacing[depth_axis])
    return (np.asarray(echogenicity, dtype=np.float32) * np.exp(-attenuation_per_mm * path)).astype(
        np.float32
    )


def _check(echo: np.ndarray, spacing: Sequence[float], depth_axis: int) -> None:
    if echo.ndim not in (2, 3):
        raise InputError(None, f"echogenicity map must be 2D (X, Y) or 3D (X, Y, Z), got shape {echo.shape}")
    if len(spacing) != echo.ndim or min(spacing) <= 0:
        raise InputError(
            None, f"spacing {tuple(spacing)} must hold one positive value per axis of {echo.shape}"
        )
    if not -echo.ndim <= depth_axis < echo.ndim:
        raise InputError(None, f"depth_axis {depth_axis} is not an axis of shape {echo.shape}")
    if not np.all(np.isfinite(echo)) or echo.min() < 0:
        raise InputError(None, "echogenicity map must be finite and non-negative")


def _scatterer_field(
    echo: np.ndarray, rng: np.random.Generator, threshold: float, density: float, gain: float, stable: bool
) -> np.ndarray:
    """Real Gaussian scatterer amplitudes (fully developed speckle) plus sparse bright specular points.

    ``stable``: a sign for every pixel, so that the number of draws does not depend on the map.
    """
    field = rng.standard_normal(echo.shape, dtype=np.float32) * echo
    specular = (echo >= threshold) & (rng.random(echo.shape, dtype=np.float32) < density)
    signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), echo.shape if stable else int(specular.sum()))
    field[specular] += gain * echo[specular] * (signs[specular] if stable else signs)
    return field


def _rf_pulse(centre_frequency_mhz: float, fractional_bandwidth: float, step_mm: float) -> np.ndarray:
    """Two-way RF pulse along depth: a Gaussian-modulated cosine, sampled every ``step_mm``."""
    sigma = axial_sigma_mm(centre_frequency_mhz, fractional_bandwidth)
    z = np.arange(-math.ceil(3.5 * sigma / step_mm), math.ceil(3.5 * sigma / step_mm) + 1) * step_mm
    period = wavelength_mm(centre_frequency_mhz) / 2.0
    return (np.exp(-0.5 * (z / sigma) ** 2) * np.cos(2.0 * math.pi * z / period)).astype(np.float32)


def _gaussian_kernel(sigma_px: float) -> np.ndarray:
    radius = max(1, math.ceil(3.0 * sigma_px))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    return np.exp(-0.5 * (x / max(sigma_px, 1e-3)) ** 2)


def _beam_power(
    spacing: Sequence[float], centre_frequency_mhz: float, f_number: float, elevation_f_number: float
) -> float:
    power = 1.0
    for axis, f_num in zip(range(len(spacing) - 1), (f_number, elevation_f_number), strict=False):
        power *= float(
            np.sum(_gaussian_kernel(beam_sigma_mm(centre_frequency_mhz, f_num) / spacing[axis]) ** 2)
        )
    return power
