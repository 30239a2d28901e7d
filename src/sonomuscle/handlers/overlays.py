"""Pictures to check a result by eye: masks over the B-mode image with the lines the measures fitted and
their values, as a JPEG per image or as an mp4 per video.

Drawn for every image of a batch job, so kept cheap: the grey image goes to 8 bits once, only masked
pixels are blended, images are saved as JPEG (these are pictures to look at, not archives) and videos are
encoded with x264's fastest preset. A video's overlay is
written under a temporary name and published when the loop ends, so a crash leaves no half-file behind.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import av
import numpy as np
from monai.data import MetaTensor
from PIL import Image, ImageDraw, ImageFont

from sonomuscle.data.frames import FRAME_KEY, RATE_KEY, read_frames
from sonomuscle.data.readers import load_image, stem_of
from sonomuscle.data.yuv import ONE_THREAD, yuv420p_frame
from sonomuscle.io import atomic_write_with
from sonomuscle.measures.architecture import ArchitectureResult

# overlay colours (RGB) for channel 0 (aponeurosis) and channel 1 (fascicle), and for the fitted lines
COLOURS = ((255, 64, 64), (64, 255, 64))
EDGE_COLOUR, FASCICLE_COLOUR = (255, 230, 0), (0, 220, 255)
LEGEND = "red aponeurosis, green fascicle (network); yellow edges, cyan fascicles (measured)"
# one colour per structure of a label map, in class order (distinct on grey speckle; cycled beyond eight)
STRUCTURE_COLOURS = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
)
TEXT_COLOUR = (255, 255, 255)
MASK_WEIGHT = 0.6
JPEG_QUALITY = 92


def overlay_picture(
    grey: np.ndarray, masks: np.ndarray, colours: Sequence[tuple[int, int, int]] = COLOURS
) -> np.ndarray:
    """``(rows, cols, 3)`` uint8 picture of an ``(X, Y)`` grey image with ``(C, X, Y)`` boolean masks on it,
    mask ``c`` in ``colours[c]``.

    Grey levels within 0–255 are shown as they are; other ranges (16-bit DICOM) are stretched to 0–255.
    """
    grey = np.asarray(grey)
    low, high = float(grey.min()), float(grey.max())
    if low < 0 or high > 255:
        grey = (grey - low) * (255.0 / max(high - low, 1e-6))
    rows = grey.astype(np.uint8).T  # (X, Y) → rows = depth
    rgb = np.empty((*rows.shape, 3), dtype=np.uint8)
    for channel in range(3):
        rgb[..., channel] = rows
    pixels = rgb.reshape(-1, 3)
    for mask, colour in zip(masks, colours, strict=False):
        inside = np.flatnonzero(mask.T)
        pixels[inside] = ((1 - MASK_WEIGHT) * pixels[inside] + MASK_WEIGHT * np.asarray(colour)).astype(
            np.uint8
        )
    return rgb


@dataclass(frozen=True)
class MeasuredFigure:
    """What to draw of one result, in pixels of the picture: straight lines and a caption."""

    edges: list[tuple[tuple[float, float], tuple[float, float]]]  # fitted aponeurosis edges L_s, L_d
    fascicles: list[tuple[tuple[float, float], tuple[float, float]]]  # each from L_d to L_s
    caption: str


def measured_figure(
    result: ArchitectureResult, row: dict, spacing: tuple[float, float] | None, width: int
) -> MeasuredFigure:
    """The fitted lines of ``result`` in pixels of a picture ``width`` pixels wide (the geometry is in mm
    with ``spacing``, else in px), and the row's values as a caption; nothing of a measure the row left
    empty (not found, or never trained)."""
    step = np.asarray(spacing if spacing is not None else (1.0, 1.0), dtype=float)

    def pixel(point: np.ndarray) -> tuple[float, float]:
        return float(point[0] / step[0]), float(point[1] / step[1])

    edges, fascicles = [], []
    if not math.isnan(row["thickness"]) and result.superficial is not None and result.deep is not None:
        span = np.array([0.0, width - 1.0]) * step[0]
        edges = [
            tuple(pixel(np.array([x, line.y(x)])) for x in span) for line in (result.superficial, result.deep)
        ]
        if not math.isnan(row["pennation_angle"]):
            fascicles = [
                (pixel(c + d * result.deep.hit(c, d)), pixel(c + d * result.superficial.hit(c, d)))
                for c, d in result.fascicle_lines
            ]
    return MeasuredFigure(edges, fascicles, _caption(row))


def draw_measures(picture: np.ndarray, figure: MeasuredFigure) -> np.ndarray:
    """``picture`` (from :func:`overlay_picture`) with the fitted edges (yellow), the measured fascicles
    (cyan) and, bottom left, the values and a legend."""
    image = Image.fromarray(picture)
    draw = ImageDraw.Draw(image)
    size = (picture.shape[1], picture.shape[0])
    for segments, colour in ((figure.edges, EDGE_COLOUR), (figure.fascicles, FASCICLE_COLOUR)):
        for segment in filter(None, (_clipped(segment, size) for segment in segments)):
            draw.line(segment, fill=colour, width=1)
    return draw_caption(np.asarray(image), [(figure.caption, TEXT_COLOUR), (LEGEND, TEXT_COLOUR)])


def draw_caption(picture: np.ndarray, lines: Sequence[tuple[str, tuple[int, int, int]]]) -> np.ndarray:
    """``picture`` with ``lines`` of text, each in its colour, on a black box at the bottom left."""
    image = Image.fromarray(picture)
    draw = ImageDraw.Draw(image)
    font = _font(max(10, picture.shape[0] // 45))
    boxes = [draw.textbbox((0, 0), text, font=font) for text, _ in lines]
    height = max(bottom for _, _, _, bottom in boxes) + 2
    y = picture.shape[0] - height * len(lines) - 6
    width = max(right for _, _, right, _ in boxes)
    draw.rectangle((2, y - 2, 6 + width, picture.shape[0] - 4), fill=(0, 0, 0))
    for text, colour in lines:
        draw.text((4, y), text, fill=colour, font=font)
        y += height
    return np.asarray(image)


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """PIL's default font at ``size`` pixels, loaded once per size (loading it took a millisecond a frame)."""
    return ImageFont.load_default(size=size)


def _clipped(
    segment: tuple[tuple[float, float], tuple[float, float]], size: tuple[int, int]
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The part of a segment inside a ``(width, height)`` picture (Liang–Barsky), None if none is.

    A nearly flat fascicle meets the aponeuroses thousands of pixels away, and PIL walks every pixel of a
    line it draws, inside the picture or not.
    """
    (x0, y0), (x1, y1) = segment
    dx, dy = x1 - x0, y1 - y0
    low, high = 0.0, 1.0
    for p, q in ((-dx, x0), (dx, size[0] - 1 - x0), (-dy, y0), (dy, size[1] - 1 - y0)):
        if p == 0:
            if q < 0:
                return None
            continue
        t = q / p
        if p < 0:
            low = max(low, t)
        else:
            high = min(high, t)
    if low > high:
        return None
    return (x0 + low * dx, y0 + low * dy), (x0 + high * dx, y0 + high * dy)


def _caption(row: dict) -> str:
    if math.isnan(row["thickness"]):
        return "aponeuroses not found"
    units = row["units"]
    parts = [f"thickness {row['thickness']:.1f} {units}"]
    if not math.isnan(row["pennation_angle"]):
        parts += [
            f"pennation {row['pennation_angle']:.1f}° deep, {row['pennation_angle_superficial']:.1f}° sup.",
            f"fascicle length {row['fascicle_length']:.1f} {units}",
        ]
    return "   ".join(parts)


def save_overlay_image(
    source: Path,
    masks: np.ndarray,
    folder: Path,
    annotate: Callable[[np.ndarray], np.ndarray] = lambda p: p,
    grey: np.ndarray | None = None,
    colours: Sequence[tuple[int, int, int]] = COLOURS,
) -> Path:
    """``folder/<stem>_overlay.jpg`` of an image file, written atomically (JPEG: a tenth of the time of a
    PNG for a speckled picture, a third of the size); ``annotate`` draws on the picture first. ``grey``
    spares reading the file again when the caller has it."""
    if grey is None:
        grey, _ = load_image(source)
    picture = Image.fromarray(annotate(overlay_picture(grey, masks, colours)))
    return atomic_write_with(
        folder / f"{stem_of(source)}_overlay.jpg", lambda p: picture.save(p, "JPEG", quality=JPEG_QUALITY)
    )


class VideoOverlays:
    """``folder/<stem>_overlay.mp4`` per cine loop or video, its frames added in order as they are measured.

    Each frame is drawn on the grey frame the caller passes (the one the pipeline decoded), else on the
    frame decoded again from the source.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.source: Path | None = None

    def add(
        self,
        source: Path,
        meta: dict,
        masks: np.ndarray,
        annotate: Callable[[np.ndarray], np.ndarray] = lambda p: p,
        grey: np.ndarray | None = None,
    ) -> None:
        """Frame ``meta[FRAME_KEY]`` of ``source`` with its masks; ``grey`` spares decoding the frame again."""
        if source != self.source:
            self.close()
            self._open(source, float(meta.get(RATE_KEY, 25.0)))
        if grey is None:
            grey = self._decoded(int(meta[FRAME_KEY]))
        if grey is not None:
            self._write(annotate(overlay_picture(grey, masks)))

    def close(self) -> None:
        """Finish the current video and publish it under its real name."""
        if self.source is None:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        os.replace(self._tmp, self._target)
        self.source = None

    def _open(self, source: Path, rate: float) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._target = self.folder / f"{stem_of(source)}_overlay.mp4"
        self._tmp = self.folder / f".tmp-{self._target.name}"
        self._container = av.open(str(self._tmp), "w")
        self._stream = self._container.add_stream(
            "libx264", rate=round(rate) or 25, options={"preset": "ultrafast", "threads": str(ONE_THREAD)}
        )
        self._stream.pix_fmt = "yuv420p"
        self._frames: Iterator[MetaTensor] | None = None  # decoded again only for frames not given
        self._size: tuple[int, int] | None = None
        self.source = source

    def _decoded(self, index: int) -> np.ndarray | None:
        if self._frames is None:
            self._frames = read_frames(self.source)
        for frame in self._frames:
            if int(frame.meta[FRAME_KEY]) == index:
                return frame[0].numpy()
        return None

    def _write(self, picture: np.ndarray) -> None:
        if self._size is None:  # x264 in yuv420p needs even sizes
            self._size = (picture.shape[1] // 2 * 2, picture.shape[0] // 2 * 2)
            self._stream.width, self._stream.height = self._size
        # converted here, not by swscale: this runs in the forked measuring process (sonomuscle.data.yuv)
        frame = yuv420p_frame(picture[: self._size[1], : self._size[0]])
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
