"""Random B-mode augmentations that mimic how scanners and settings change an ultrasound image.

Each is a MONAI dictionary transform for channel-first images scaled to [0, 1], ``(C, X, Y)`` or
``(C, X, Y, Z)``, with depth on spatial axis ``depth_axis`` (1 by default, see docs/CONVENTIONS.md).
One random draw per call is shared by all keys. They change intensities only, so they record nothing
in ``applied_operations`` and a later ``Invertd`` is unaffected. The output has the input's container
(numpy, torch or MetaTensor, metadata kept), dtype and shape. Results are clipped to [0, 1], as a
scanner's display saturates. Gain and gamma are MONAI's ``RandScaleIntensityd`` / ``RandAdjustContrastd``;
each bundle's ``train#augmentation`` lists the ones it uses with MONAI's flips and elastic deformation.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import (
    MapTransform,
    RandomizableTransform,
)
from monai.utils import ImageMetaKey, ensure_tuple_rep
from monai.utils.type_conversion import convert_to_dst_type, convert_to_tensor
from scipy.interpolate import PchipInterpolator

from sonomuscle.errors import InputError

__all__ = [
    "RandAcousticShadowd",
    "RandDepthGaind",
    "RandDynamicRanged",
    "RandProbeFootprintd",
    "RandSpeckled",
]


class _RandUltrasoundIntensityd(RandomizableTransform, MapTransform):
    """Shared plumbing: draw once per call from the first key's image, apply to every key alike.

    Subclasses implement ``_draw(image)`` (draw this call's parameters; ``image`` is the first key's float
    tensor) and ``_apply(image)`` (a float tensor in, the augmented tensor out).
    """

    def __init__(self, keys: KeysCollection, prob: float, depth_axis: int, allow_missing_keys: bool) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.depth_axis = depth_axis

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        self.randomize(None)
        first = self.first_key(d)
        if not self._do_transform or first == ():
            return d
        self._draw(self._as_float(d, first))
        for key in self.key_iterator(d):
            out = self._apply(self._as_float(d, key)).clamp_(0.0, 1.0)
            d[key] = convert_to_dst_type(out, d[key], dtype=out.dtype)[0]
        return d

    def _as_float(self, d: Mapping[Hashable, NdarrayOrTensor], key: Hashable) -> torch.Tensor:
        """A plain float tensor of ``d[key]``, after checking it is channel-first with a depth axis."""
        image = convert_to_tensor(d[key], track_meta=False)
        if image.ndim not in (3, 4) or not 0 <= self.depth_axis < image.ndim - 1:
            meta = d[key].meta if isinstance(d[key], MetaTensor) else {}
            raise InputError(
                meta.get(ImageMetaKey.FILENAME_OR_OBJ, key),
                f"{type(self).__name__} needs a channel-first 2D or 3D image with depth on spatial axis "
                f"{self.depth_axis}, got shape {tuple(image.shape)}",
            )
        return image if image.is_floating_point() else image.float()

    @staticmethod
    def _along(profile: torch.Tensor, axis: int, ndim: int) -> torch.Tensor:
        """``profile`` (one value per position on spatial ``axis``) shaped to broadcast over a channel-first image."""
        shape = [1] * ndim
        shape[axis + 1] = -1
        return profile.reshape(shape)

    def _torch_generator(self) -> torch.Generator:
        """A torch generator seeded from ``self.R``, so large noise fields are drawn fast and reproducibly."""
        return torch.Generator().manual_seed(int(self.R.randint(0, 2**31 - 1)))

    def _draw(self, image: torch.Tensor) -> None:
        raise NotImplementedError

    def _apply(self, image: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class RandSpeckled(_RandUltrasoundIntensityd):
    """Multiplicative speckle with the statistics of fully developed speckle.

    A complex Gaussian field smoothed by a Gaussian point-spread function (``sigma`` pixels per spatial
    axis: the speckle grain size, 0 for uncorrelated) has a Rayleigh-distributed magnitude, correlated
    over a few pixels as real speckle is. ``distribution="rayleigh"`` uses that magnitude (amplitude speckle, std/mean 0.52),
    ``"gamma"`` its square (intensity speckle, exponential = gamma of shape 1, std/mean 1); both are
    scaled to mean 1. The image is multiplied by ``1 + s * (field - 1)`` with ``s`` drawn from ``strength``,
    so the mean is kept and local variance rises with ``s``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.1,
        strength: tuple[float, float] = (0.1, 0.5),
        sigma: Sequence[float] | float = 1.0,
        distribution: str = "rayleigh",
        depth_axis: int = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, prob, depth_axis, allow_missing_keys)
        if distribution not in ("rayleigh", "gamma"):
            raise ValueError(f"distribution must be 'rayleigh' or 'gamma', got {distribution!r}")
        if not 0.0 <= strength[0] <= strength[1] <= 1.0:
            raise ValueError(f"strength must be a range within [0, 1], got {strength}")
        self.strength = strength
        self.sigma = sigma
        self.distribution = distribution
        self._multiplier: torch.Tensor | None = None

    def _draw(self, image: torch.Tensor) -> None:
        spatial = image.shape[1:]
        # white complex noise filtered by the PSF in k-space: faster than a spatial Gaussian filter
        # (about 2 ms for 256², 30 ms for 96²×64 on one CPU core) and free of edge effects
        spectrum = torch.randn((1, *spatial), dtype=torch.complex64, generator=self._torch_generator())
        for axis, (size, sigma) in enumerate(
            zip(spatial, ensure_tuple_rep(self.sigma, len(spatial)), strict=True)
        ):
            transfer = torch.exp(-2.0 * (math.pi * sigma * torch.fft.fftfreq(size)) ** 2)
            spectrum = spectrum * self._along(transfer, axis, spectrum.ndim)
        amplitude = torch.fft.ifftn(spectrum, dim=tuple(range(1, spectrum.ndim))).abs().to(image)
        field = amplitude if self.distribution == "rayleigh" else amplitude.square()
        strength = self.R.uniform(*self.strength)
        self._multiplier = 1.0 + strength * (field / field.mean() - 1.0)

    def _apply(self, image: torch.Tensor) -> torch.Tensor:
        return image * self._multiplier


class RandDepthGaind(_RandUltrasoundIntensityd):
    """Depth attenuation and time-gain compensation (TGC) settings: a smooth gain profile along depth.

    Profile = ``exp(-a * depth)`` (depth 0 at the skin, 1 at the bottom; ``a`` nepers over the image drawn
    from ``attenuation``, negative for over-compensation) times a TGC curve through ``tgc_knots``
    evenly spaced knots with gains drawn from ``tgc_range``, interpolated monotonically between knots
    (PCHIP, no overshoot) as a scanner's TGC sliders are.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.1,
        attenuation: tuple[float, float] = (-0.2, 0.8),
        tgc_range: tuple[float, float] = (0.75, 1.25),
        tgc_knots: int = 5,
        depth_axis: int = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, prob, depth_axis, allow_missing_keys)
        if tgc_knots < 2 or tgc_range[0] <= 0:
            raise ValueError(f"need >= 2 TGC knots and positive gains, got {tgc_knots} knots, {tgc_range}")
        self.attenuation = attenuation
        self.tgc_range = tgc_range
        self.tgc_knots = tgc_knots
        self._profile: torch.Tensor | None = None

    def _draw(self, image: torch.Tensor) -> None:
        depth = np.linspace(0.0, 1.0, image.shape[self.depth_axis + 1])
        knots = self.R.uniform(*self.tgc_range, size=self.tgc_knots)
        tgc = PchipInterpolator(np.linspace(0.0, 1.0, self.tgc_knots), knots)(depth)
        profile = np.exp(-self.R.uniform(*self.attenuation) * depth) * tgc
        self._profile = torch.as_tensor(profile, dtype=image.dtype, device=image.device)

    def _apply(self, image: torch.Tensor) -> torch.Tensor:
        return image * self._along(self._profile, self.depth_axis, image.ndim)


class RandDynamicRanged(_RandUltrasoundIntensityd):
    """Re-map log-compressed intensities as if displayed with another dynamic range.

    A B-mode pixel is ``1 + 20 log10(A / A_max) / DR`` (``DR`` in dB, clipped to [0, 1]). Assuming the
    image was made with ``source_db``, re-compressing with ``DR'`` drawn from ``target_db`` gives
    ``1 - (1 - x) * source_db / DR'``: a narrower range deepens contrast and blackens weak echoes,
    a wider one greys out the background. Put ``RandProbeFootprintd`` after it, so black margins stay black.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.1,
        target_db: tuple[float, float] = (45.0, 80.0),
        source_db: float = 60.0,
        depth_axis: int = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, prob, depth_axis, allow_missing_keys)
        if source_db <= 0 or target_db[0] <= 0:
            raise ValueError(
                f"dynamic ranges must be positive dB, got source {source_db}, target {target_db}"
            )
        self.target_db = target_db
        self.source_db = source_db
        self._ratio = 1.0

    def _draw(self, image: torch.Tensor) -> None:
        self._ratio = self.source_db / self.R.uniform(*self.target_db)

    def _apply(self, image: torch.Tensor) -> torch.Tensor:
        return 1.0 - (1.0 - image) * self._ratio


def _ramp(t: torch.Tensor) -> torch.Tensor:
    """Smoothstep: 0 for t <= 0, 1 for t >= 1, C1-smooth between (soft shadow edges)."""
    t = t.clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class RandAcousticShadowd(_RandUltrasoundIntensityd):
    """An acoustic shadow: a column below a strong reflector (bone, calcification, gas) loses intensity.

    The column spans a random band on each non-depth axis (``width``, a fraction of that axis) and starts
    at a random depth (``start``, a fraction of the depth); inside it intensity is multiplied by
    ``1 - s`` (``s`` from ``strength``). Edges ramp over ``edge`` (fraction of each axis) inwards, so
    nothing outside the band or above the start changes. With ``below_bright=True`` the start is just
    below the brightest depth in the band (within the ``start`` range): the shadow hangs under a reflector.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.1,
        width: tuple[float, float] = (0.05, 0.3),
        start: tuple[float, float] = (0.1, 0.7),
        strength: tuple[float, float] = (0.4, 0.9),
        edge: float = 0.03,
        below_bright: bool = False,
        depth_axis: int = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, prob, depth_axis, allow_missing_keys)
        if not (0.0 < width[0] <= width[1] <= 1.0 and 0.0 <= start[0] <= start[1] <= 1.0 and edge > 0.0):
            raise ValueError(
                f"width and start must be ranges within [0, 1], edge > 0: {width}, {start}, {edge}"
            )
        self.width = width
        self.start = start
        self.strength = strength
        self.edge = edge
        self.below_bright = below_bright
        self._darkening: torch.Tensor | None = None

    def _draw(self, image: torch.Tensor) -> None:
        spatial = image.shape[1:]
        band = torch.ones(
            (1, *spatial), dtype=image.dtype, device=image.device
        )  # 1 inside the band on every non-depth axis
        for axis, size in enumerate(spatial):
            if axis == self.depth_axis:
                continue
            half = self.R.uniform(*self.width) * size / 2
            centre = self.R.uniform(0, size)
            soft = max(min(self.edge * size, half / 2), 0.5)  # narrow bands still reach full strength
            lo, hi = centre - half, centre + half
            coords = torch.arange(size, dtype=image.dtype, device=image.device)
            band = band * self._along(
                _ramp((coords - lo) / soft) * _ramp((hi - coords) / soft), axis, band.ndim
            )
        depth_size = spatial[self.depth_axis]
        first, last = (round(f * (depth_size - 1)) for f in self.start)
        if self.below_bright and band.sum() > 0:
            reduce = [a + 1 for a in range(len(spatial)) if a != self.depth_axis]
            profile = (image.mean(0, keepdim=True) * band).sum(reduce) / band.sum(reduce)
            top = first + int(profile.flatten()[first : last + 1].argmax()) + 1
        else:
            top = int(self.R.randint(first, last + 1))
        depth = torch.arange(depth_size, dtype=image.dtype, device=image.device)
        soft = max(self.edge * depth_size, 1.0)
        below = self._along(_ramp((depth - top + 1) / soft), self.depth_axis, band.ndim)
        self._darkening = 1.0 - self.R.uniform(*self.strength) * band * below

    def _apply(self, image: torch.Tensor) -> torch.Tensor:
        return image * self._darkening


class RandProbeFootprintd(_RandUltrasoundIntensityd):
    """Black margins outside a scanner's image area, as in images exported from a scanner's screen.

    The footprint lies in the lateral-depth plane (lateral = first non-depth axis) and is repeated along
    elevation. It sits inside random margins (``margin``, fraction of each side) and is a ``"trapezoid"``
    (sides tilted by a half-angle from ``angle`` degrees, a rectangle at 0) or a ``"sector"`` (convex /
    phased array: radial sides, arcs top and bottom), picked from ``shapes``. Pixels outside become 0.
    Give it image keys only: labels keep their annotations.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.1,
        shapes: Sequence[str] = ("trapezoid", "sector"),
        margin: tuple[float, float] = (0.0, 0.1),
        angle: tuple[float, float] = (0.0, 30.0),
        depth_axis: int = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, prob, depth_axis, allow_missing_keys)
        if not shapes or set(shapes) - {"trapezoid", "sector"}:
            raise ValueError(f"shapes must be a non-empty choice of 'trapezoid' and 'sector', got {shapes}")
        if not (0.0 <= margin[0] <= margin[1] < 0.5 and 0.0 <= angle[0] <= angle[1] < 90.0):
            raise ValueError(
                f"margin must be within [0, 0.5), angle within [0, 90) degrees: {margin}, {angle}"
            )
        self.shapes = tuple(shapes)
        self.margin = margin
        self.angle = angle
        self._mask: torch.Tensor | None = None

    def _draw(self, image: torch.Tensor) -> None:
        lateral_axis = 1 if self.depth_axis == 0 else 0
        width, height = image.shape[lateral_axis + 1], image.shape[self.depth_axis + 1]
        left, right, top, bottom = self.R.uniform(*self.margin, size=4)
        x_lo, x_hi = left * width, (1.0 - right) * width - 1
        y_lo, y_hi = top * height, (1.0 - bottom) * height - 1
        centre, half_bottom = (x_lo + x_hi) / 2, (x_hi - x_lo) / 2
        kind = self.shapes[self.R.randint(len(self.shapes))]
        theta = math.radians(self.R.uniform(*self.angle))
        x = torch.arange(width, dtype=torch.float64)[:, None] - centre
        y = torch.arange(height, dtype=torch.float64)[None, :]
        if kind == "trapezoid":
            # sides narrow towards the top, keeping at least a fifth of the bottom width
            tilt = min(math.tan(theta), 0.8 * half_bottom / max(y_hi - y_lo, 1.0))
            inside = (y >= y_lo) & (y <= y_hi) & (x.abs() <= half_bottom - (y_hi - y) * tilt)
        else:
            theta = max(theta, math.radians(1.0))  # a sector needs an opening angle
            radius = half_bottom / math.sin(theta)
            apex = y_hi - radius  # above the image; radial sides reach the bottom margin's corners
            r = torch.sqrt(x**2 + (y - apex) ** 2)
            inside = (r >= y_lo - apex) & (r <= radius) & (torch.atan2(x.abs(), y - apex) <= theta)
        shape = [1] * image.ndim
        shape[lateral_axis + 1], shape[self.depth_axis + 1] = width, height
        inside = inside.T if lateral_axis > self.depth_axis else inside
        self._mask = inside.reshape(shape).to(image)

    def _apply(self, image: torch.Tensor) -> torch.Tensor:
        return image * self._mask
