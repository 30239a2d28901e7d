"""Frames of cine loops and videos, decoded one at a time, as MetaTensors the bundle's pipeline takes.

A video (mp4/avi/mov, decoded by PyAV, whose wheels carry FFmpeg) or a multi-frame DICOM is a sequence
of 2D images; :func:`read_frames` yields every ``step``-th one with its index and time, shaped and
calibrated like a file that ``LoadImaged`` read with :class:`~sonomuscle.data.readers.UltrasoundImageReader`
(videos carry no calibration; a DICOM's ultrasound regions do). A packet that cannot be decoded is
reported on one line and the loop goes on with the next; a file that cannot be opened is an
:class:`~sonomuscle.errors.InputError`.

FFmpeg decodes on the calling thread (:data:`sonomuscle.data.yuv.ONE_THREAD`) and grey levels are taken
from the luma plane (:func:`sonomuscle.data.yuv.grey_of`), not converted by swscale: frames are decoded in
forked DataLoader workers, where swscale hung in CI. A 512×512 H.264 frame decodes in 1.8 ms on one thread,
1.3 ms on several.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import av
import nibabel as nib
import numpy as np
import pydicom
from monai.data import MetaTensor

from sonomuscle.data.readers import (
    DICOM_SUFFIXES,
    UltrasoundImage,
    decoded_tensor,
    read_ultrasound,
    suffix_of,
)
from sonomuscle.data.yuv import ONE_THREAD, grey_of
from sonomuscle.errors import InputError
from sonomuscle.io import atomic_write_with

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov")
# meta keys of a frame: its index in the loop (MONAI's SaveImage appends it to output names) and time
FRAME_KEY = "patch_index"
TIME_KEY = "time_s"
RATE_KEY = "frame_rate"


def is_cine(path: str | Path) -> bool:
    """A video, or a DICOM holding more than one frame (read from the header only)."""
    suffix = suffix_of(path)
    if suffix in VIDEO_SUFFIXES:
        return True
    if suffix not in DICOM_SUFFIXES or not Path(path).is_file():
        return False
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # unreadable: the reader says why when the file is loaded
        return False
    return int(header.get("NumberOfFrames", 1) or 1) > 1


def read_frames(path: str | Path, step: int = 1) -> Iterator[MetaTensor]:
    """Channel-first ``(1, X, Y)`` MetaTensors of frames 0, step, 2·step, … with index, time and rate in meta."""
    if step < 1:
        raise InputError(None, f"frame step must be ≥ 1, got {step}")
    path = Path(path)
    frames = _video_frames(path) if suffix_of(path) in VIDEO_SUFFIXES else _dicom_frames(path)
    for index, time_s, rate, image in frames:
        if index % step:
            continue
        tensor = decoded_tensor(image)
        tensor.meta.update({FRAME_KEY: index, TIME_KEY: time_s, RATE_KEY: rate / step})
        yield tensor


def write_frames(path: str | Path, out: str | Path, step: int = 1) -> list[Path]:
    """Every ``step``-th frame of a cine loop or video as ``<name>_frame<index>.nii.gz`` in ``out``: single
    2D images, calibrated where the file is (a DICOM's ultrasound regions), that 3D Slicer opens and MONAI
    Label serves for annotation. Each file is written atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(path).name.split(".")[0]
    written = []
    for frame in read_frames(path, step):
        target = out / f"{stem}_frame{frame.meta[FRAME_KEY]:05d}.nii.gz"
        image = nib.Nifti1Image(frame[0].numpy(), np.asarray(frame.affine, dtype=np.float64))
        written.append(atomic_write_with(target, lambda tmp, image=image: nib.save(image, tmp)))
    if not written:
        raise InputError(path, "no frame could be decoded")
    return written


def _video_frames(path: Path) -> Iterator[tuple[int, float, float, UltrasoundImage]]:
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read video ({type(err).__name__}: {err})") from err
    with container:
        if not container.streams.video:
            raise InputError(path, "no video stream in the file")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = ONE_THREAD
        rate = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
        index = 0
        for packet in container.demux(stream):
            try:
                decoded = packet.decode()
            except av.FFmpegError as err:
                logger.warning(
                    "%s: a packet after frame %d could not be decoded (%s); skipped", path, index, err
                )
                continue
            for frame in decoded:
                # rows are depth: (X, Y)
                grey = grey_of(frame).T
                time_s = float(frame.time) if frame.time is not None else index / rate
                yield index, time_s, rate, UltrasoundImage(path, grey, None, np.eye(4))
                index += 1
        if index == 0:
            raise InputError(path, "no frame could be decoded")


def _dicom_frames(path: Path) -> Iterator[tuple[int, float, float, UltrasoundImage]]:
    cine = read_ultrasound(path)
    if cine.array.ndim != 3:
        raise InputError(path, f"expected a multi-frame DICOM, got shape {cine.array.shape}")
    spacing = None if cine.spacing is None else cine.spacing[:2]
    affine = np.diag([*(spacing or (1.0, 1.0)), 1.0, 1.0])
    rate = _dicom_frame_rate(path)
    for index in range(cine.array.shape[2]):
        yield index, index / rate, rate, UltrasoundImage(path, cine.array[..., index], spacing, affine)


def _dicom_frame_rate(path: Path) -> float:
    """Frames per second from FrameTime (ms) or CineRate; 25 when the file says neither."""
    header = pydicom.dcmread(path, stop_before_pixels=True)
    if header.get("FrameTime"):
        return 1000.0 / float(header.FrameTime)
    return float(header.get("CineRate", 0) or 0) or 25.0
