"""Cine loops of a contracting pennate muscle with a known time course, and their H.264 dataset writer.

A loop draws one architecture (``architecture2d.draw_geometry``), sets its pennation angle to a rest value of
8–40° and plays a contraction over the loop: rest → raised-cosine ramp up → hold → ramp down → rest
(``activation``). At full activation the angle is 6–20° above rest and the thickness 2–5 % above or below it;
in between both follow the activation. The deep aponeurosis stays where it is (with the deeper muscle and the
bone below it), the superficial one moves to give the thickness, and the fascicles turn about their insertion
on the deep aponeurosis at the image centre, so the fascicle length follows the geometry (it shortens as the
angle rises). Layer depths, tilts and band widths stay fixed within a loop.

Every frame renders with the same seeds (``architecture2d.Draws.seeded``): the same scatterers, perimysium,
septa, bone and imaging parameters, so consecutive frames differ only where the geometry moved, like a real
cine, and rest frames are identical. The truth of a frame is ``architecture2d.render``'s, exactly as for the
single-image phantoms.

Cost: a 512 × 512 frame at 0.1 mm renders in about 0.35 s on one CPU core; a 60-frame loop with its encoding
takes about 22 s and 1.4 MB (lossless H.264, High 4:4:4 Predictive profile).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np
import pandas as pd
from av.video.reformatter import ColorRange
from tqdm import tqdm

from sonomuscle.data.phantoms import architecture2d
from sonomuscle.data.phantoms.architecture2d import (
    Draws,
    Geometry,
    Line,
    Phantom,
    draw_geometry,
    normal_distance,
    render,
)
from sonomuscle.errors import InputError
from sonomuscle.io import atomic_write_json, atomic_write_with

FPS = 25
FRAMES = 60  # 2.4 s at 25 fps
SHAPE = (512, 512)  # (X, Y) pixels: a 51 mm field of view at 0.1 mm
SPACING_MM = 0.1
TRUTH_COLUMNS = ("loop", "frame", "time_s", *architecture2d.TRUTH_COLUMNS[1:])
# rest to strong contraction: up to 60° at full activation (architecture2d.PENNATION_RANGE_DEG)
REST_ANGLE_RANGE_DEG = (8.0, 40.0)
ANGLE_CHANGE_RANGE_DEG = (6.0, 20.0)
THICKNESS_CHANGE_RANGE = (0.02, 0.05)  # relative, either sign
# the time course, as fractions of the loop: rest until REST_END, ramp up until HOLD_START, hold until
# HOLD_END, ramp down until RELAX_END, then rest
_REST_END, _HOLD_START, _HOLD_END, _RELAX_END = 0.15, 0.4, 0.6, 0.85


@dataclass
class PhantomLoop:
    """The frames of one loop and the time course that made them."""

    frames: list[Phantom]
    activation: np.ndarray  # (frames,) contraction level in [0, 1]
    rest_angle_deg: float
    angle_change_deg: float  # pennation angle at full activation minus at rest
    thickness_change: float  # relative thickness change at full activation
    fps: int = FPS


def activation(n_frames: int) -> np.ndarray:
    """Contraction level in [0, 1] of each frame: 0 at the first and last, 1 through the hold, smooth ramps."""
    if n_frames < 1:
        raise InputError(None, f"a loop needs ≥ 1 frame, got {n_frames}")
    u = np.arange(n_frames) / max(n_frames - 1, 1)
    up = np.clip((u - _REST_END) / (_HOLD_START - _REST_END), 0.0, 1.0)
    down = np.clip((u - _HOLD_END) / (_RELAX_END - _HOLD_END), 0.0, 1.0)
    return (np.cos(np.pi * down) - np.cos(np.pi * up)) / 2.0


def make_loop(
    rng: np.random.Generator,
    n_frames: int = FRAMES,
    shape: tuple[int, int] = SHAPE,
    spacing: float = SPACING_MM,
) -> PhantomLoop:
    """A random pennate muscle contracting over ``n_frames`` frames (see the module's description)."""
    level = activation(n_frames)
    xc = (shape[0] - 1) / 2 * spacing
    drawn = draw_geometry(rng, shape, spacing)
    rest_angle = float(rng.uniform(*REST_ANGLE_RANGE_DEG))
    angle_change = float(rng.uniform(*ANGLE_CHANGE_RANGE_DEG))
    thickness_change = float(rng.choice([-1.0, 1.0]) * rng.uniform(*THICKNESS_CHANGE_RANGE))
    texture = int(rng.integers(2**63))
    rest_thickness = normal_distance(xc, drawn.deep, drawn.superficial)
    g = replace(drawn, pivot=(xc, float(drawn.deep.y(xc))))
    angles = np.radians(rest_angle + level * angle_change)
    thicknesses = rest_thickness * (1 + level * thickness_change)
    frames = [
        render(_posed(g, float(theta), float(thickness), xc), Draws.seeded(texture), shape, spacing)
        for theta, thickness in zip(angles, thicknesses, strict=True)
    ]
    return PhantomLoop(frames, level, rest_angle, angle_change, thickness_change)


def write_dataset(
    out: str | Path,
    n: int,
    seed: int,
    *,
    n_frames: int = FRAMES,
    shape: tuple[int, int] = SHAPE,
    spacing: float = SPACING_MM,
) -> Path:
    """Write ``n`` loops as ``loop_{i:03d}.mp4``, a ``truth.csv`` row per frame and ``sequences.json``.

    Loop ``i`` draws from ``default_rng([seed, i])``: the same seed gives the same loops, and a loop does not
    change when ``n`` does. ``sequences.json`` gives each loop's video, frame rate, frame count and spacing
    (mm per pixel, lateral and depth: videos carry no calibration). Returns its path.
    """
    if n < 1:
        raise InputError(None, f"number of loops must be ≥ 1, got {n}")
    if shape[0] % 2 or shape[1] % 2:
        raise InputError(None, f"H.264 (4:2:0) frames need even sizes, got {shape}")
    out = Path(out)
    rows, loops = [], []
    for i in tqdm(range(n), desc="architecture2d-sequence phantoms", unit="loop", disable=n <= 2):
        name = f"loop_{i:03d}"
        loop = make_loop(np.random.default_rng([seed, i]), n_frames, shape, spacing)
        write_video(out / f"{name}.mp4", [np.round(frame.image * 255) for frame in loop.frames], loop.fps)
        loops.append(
            {
                "loop": name,
                "video": f"{name}.mp4",
                "fps": loop.fps,
                "frames": n_frames,
                "spacing": [spacing] * 2,
            }
        )
        rows += [
            {"loop": name, "frame": k, "time_s": k / loop.fps, **frame.truth}
            for k, frame in enumerate(loop.frames)
        ]
    atomic_write_with(
        out / "truth.csv", lambda p: pd.DataFrame(rows, columns=TRUTH_COLUMNS).to_csv(p, index=False)
    )
    return atomic_write_json(out / "sequences.json", {"truth": "truth.csv", "loops": loops})


def _posed(g: Geometry, theta: float, thickness: float, xc: float) -> Geometry:
    """``g`` at pennation ``theta`` (rad) and ``thickness`` (mm at the centre): ``L_d`` stays, ``L_s`` moves."""
    tilt_d = math.atan(g.deep.b)
    side = math.copysign(1.0, tilt_d - g.psi)  # which lateral direction rises toward L_s
    r = math.hypot(1.0, g.deep.b)
    # L_s keeps its slope and passes through P + thickness·(b_d, -1)/r, P = (xc, L_d(xc))
    qx, qy = xc + thickness * g.deep.b / r, g.deep.y(xc) - thickness / r
    superficial = Line(qy - g.superficial.b * qx, g.superficial.b)
    return replace(g, superficial=superficial, theta=theta, psi=tilt_d - side * theta)


def write_video(path: Path, images: Sequence[np.ndarray], fps: int) -> None:
    """Lossless H.264 of ``(X, Y)`` grey frames in 0–255, rows depth (as ``dataset.write_png``).

    The grey goes straight into the luma plane (chroma neutral) at qp 0, flagged full range, so a decoder's
    grey (``frame.to_ndarray(format="gray")``) equals it exactly; a gray → yuv conversion would rescale it to
    16–235 and back (±1).
    """
    width, height = images[0].shape
    chroma = np.full((height // 2, width), 128, dtype=np.uint8)  # U and V planes as yuv420p stacks them

    def encode(tmp: Path) -> None:
        with av.open(str(tmp), "w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"qp": "0"}
            stream.codec_context.color_range = ColorRange.JPEG
            for image in images:
                luma = np.ascontiguousarray(image.T.astype(np.uint8))
                frame = av.VideoFrame.from_ndarray(np.concatenate([luma, chroma]), format="yuv420p")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())

    atomic_write_with(path, encode)
