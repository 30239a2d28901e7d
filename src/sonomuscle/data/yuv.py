"""Grey levels of decoded video frames and YUV frames for the encoder, computed in numpy, not by swscale.

Frames are decoded in DataLoader workers and overlay videos encoded in the measuring process, both forked
from a process that has threads of its own. FFmpeg's scaler (libswscale 9, PyAV 18) hung in such a child
in CI three times, with one scaling thread as well as several (``sws_frame_setup`` →
``avpriv_slicethread_free``). The conversions sonomuscle needs are simple enough to do here: the grey of a
YUV frame is its luma plane, and an overlay goes to the encoder as BT.601 YUV 4:2:0. FFmpeg's decoder and
encoder run on the calling thread too (:data:`ONE_THREAD`): no FFmpeg thread is started in a forked child.
"""

from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import ColorRange

ONE_THREAD = 1  # FFmpeg's thread count wherever sonomuscle decodes, encodes or scales
# BT.601 in the limited (MPEG) range in FFmpeg's 8-bit integer form, rows Y, U, V and columns R, G, B:
# Y = ((66 R + 129 G + 25 B + 128) >> 8) + 16, and likewise U and V around 128
_RGB_TO_YUV = np.array([[66, 129, 25], [-38, -74, 112], [112, -94, -18]], dtype=np.int32)
_GREY_OF_RGB = np.array([0.299, 0.587, 0.114])  # full-range luma, FFmpeg's "gray"
_RGB_FORMATS = ("rgb24", "bgr24", "rgba", "bgra", "argb", "abgr")


def grey_of(frame: av.VideoFrame) -> np.ndarray:
    """The frame's grey levels, 0–255, as ``(rows, columns)`` float32: what FFmpeg's conversion to
    ``gray`` gives (within rounding) for 8-bit YUV, grey and RGB frames; other formats go through swscale
    on the calling thread."""
    name = frame.format.name
    if frame.format.components[0].bits == 8 and name.startswith(("yuv", "nv", "gray")):
        plane = frame.planes[0]
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        luma = rows[:, : plane.width].astype(np.float32)
        if _limited_range(frame):
            luma = np.clip(np.round((luma - 16.0) * (255.0 / 219.0)), 0.0, 255.0)
        return luma
    if name in _RGB_FORMATS:
        pixels = frame.to_ndarray().astype(np.float32)  # no format given: the frame's own, unconverted
        channels = name.rstrip("0123456789")  # their order: "bgr", "argb", …
        rgb = pixels[..., [channels.index(c) for c in "rgb"]]
        return np.round(rgb @ _GREY_OF_RGB).astype(np.float32)
    return frame.to_ndarray(format="gray", threads=ONE_THREAD).astype(np.float32)


def yuv420p_frame(rgb: np.ndarray) -> av.VideoFrame:
    """An ``(rows, columns, 3)`` uint8 RGB picture of even size as a BT.601 limited-range YUV 4:2:0 frame,
    chroma from the mean over each 2×2 block; integer arithmetic (1.6 ms a 512×512 frame, swscale 1.0)."""
    rows, columns, _ = rgb.shape
    if rows % 2 or columns % 2:
        raise ValueError(f"YUV 4:2:0 needs an even size, got {rows}×{columns}")
    r, g, b = np.moveaxis(rgb, -1, 0).astype(np.int32)  # planes, contiguous
    luma = ((_RGB_TO_YUV[0, 0] * r + _RGB_TO_YUV[0, 1] * g + _RGB_TO_YUV[0, 2] * b + 128) >> 8) + 16
    r, g, b = (
        c[0::2, 0::2] + c[1::2, 0::2] + c[0::2, 1::2] + c[1::2, 1::2] for c in (r, g, b)
    )  # 4× the mean
    u, v = (((k[0] * r + k[1] * g + k[2] * b + 512) >> 10) + 128 for k in _RGB_TO_YUV[1:])
    planes = np.concatenate([luma.ravel(), u.ravel(), v.ravel()]).astype(np.uint8)
    return av.VideoFrame.from_ndarray(planes.reshape(rows * 3 // 2, columns), format="yuv420p")


def _limited_range(frame: av.VideoFrame) -> bool:
    """Whether luma spans 16–235: YUV not flagged full range (``yuvj*`` formats are full by definition)."""
    name = frame.format.name
    if name.startswith(("gray", "yuvj")):
        return False
    return frame.color_range != ColorRange.JPEG
