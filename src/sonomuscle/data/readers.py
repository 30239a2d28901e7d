"""Read B-mode images and volumes into sonomuscle's ``(X, Y[, Z])`` arrays with their spacing in mm.

MONAI's readers do the decoding; what is added here is what ultrasound files need on top: colour and
palette screenshots turned into one grey channel, the DICOM ultrasound-region calibration, mask checks,
and one-line :class:`~sonomuscle.errors.InputError` messages instead of library tracebacks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import nrrd
import numpy as np
import pydicom
from monai.data import ITKReader, MetaTensor, NibabelReader, PILReader
from monai.data.image_reader import ImageReader, _copy_compatible_dict, _stack_images
from monai.data.utils import affine_to_spacing, is_no_channel
from monai.transforms import EnsureChannelFirst
from monai.utils import ImageMetaKey, MetaKeys, ensure_tuple
from nibabel.openers import ImageOpener
from PIL import Image

try:
    from pydicom.pixels import apply_modality_lut
except ImportError:  # pydicom 2.4, which MONAI Label's environment pins (docs/monailabel.md)
    from pydicom.pixel_data_handlers.util import apply_modality_lut

from sonomuscle.errors import InputError

logger = logging.getLogger(__name__)

RASTER_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
DICOM_SUFFIXES = (".dcm", ".dicom")
SLICER_SEGMENTATION = ".seg.nrrd"  # 3D Slicer's segmentation file: a label map with its segments' names
VOLUME_SUFFIXES = (".nii", ".nii.gz", SLICER_SEGMENTATION, ".nrrd", ".nhdr", ".mha", ".mhd")
SUPPORTED_SUFFIXES = RASTER_SUFFIXES + DICOM_SUFFIXES + VOLUME_SUFFIXES

# DICOM PS3.3 C.8.5.5.1: RegionSpatialFormat 1 = 2D tissue image, PhysicalUnits 3 = cm
_US_REGION_2D = 1
_US_UNITS_CM = 3
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, what PIL's convert("L") uses


@dataclass
class UltrasoundImage:
    """One decoded file: what :meth:`UltrasoundImageReader.read` returns and ``get_data`` unpacks."""

    path: Path
    array: np.ndarray  # (X, Y[, Z]): grey float32, or uint8 0/1 for masks
    spacing: tuple[float, ...] | None  # mm per spatial axis; None = uncalibrated
    affine: np.ndarray  # 4x4; the header's for volumes, diag(spacing) for 2D/DICOM, identity when unknown


def suffix_of(path: str | Path) -> str:
    """Lower-case extension, with ``.nii.gz`` and ``.seg.nrrd`` as one suffix."""
    name = Path(path).name.lower()
    return next(
        (double for double in (".nii.gz", SLICER_SEGMENTATION) if name.endswith(double)), Path(name).suffix
    )


def slicer_segments(path: str | Path) -> dict[str, int]:
    """Segment name → label value of a 3D Slicer ``.seg.nrrd`` (its header's ``SegmentN_Name`` and
    ``SegmentN_LabelValue``); segments on several layers overlap and cannot be one label map."""
    header = nrrd.read_header(str(path))
    count = len([key for key in header if key.startswith("Segment") and key.endswith("_Name")])
    layers = {header.get(f"Segment{i}_Layer", "0") for i in range(count)}
    if len(layers) > 1:
        raise InputError(
            path,
            f"its segments overlap ({len(layers)} layers): export them from 3D Slicer as a label map "
            "(Segmentations > Export to files > labelmap) or make them not overlap",
        )
    return {header[f"Segment{i}_Name"]: int(header[f"Segment{i}_LabelValue"]) for i in range(count)}


def stem_of(path: str | Path) -> str:
    """File name without its (possibly double, ``.nii.gz``) extension."""
    name = Path(path).name
    return name[: len(name) - len(suffix_of(name))]


def load_image(
    path: str | Path, *, mask: bool = False, labels: bool = False, frame: int | None = None
) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """Array in ``(X, Y[, Z])`` order and spacing in mm (None when the file carries no calibration).

    Images come back as grey float32; with ``mask=True`` as uint8 0/1 (files may hold 0/1 or 0/255); with
    ``labels=True`` as an int32 label map (see :func:`label_values`).
    ``frame=k`` picks one 2D frame of a multi-frame DICOM; otherwise frames are stacked as the last axis.
    """
    image = read_ultrasound(path, mask=mask, labels=labels, frame=frame)
    return image.array, image.spacing


def read_ultrasound(
    path: str | Path, *, mask: bool = False, labels: bool = False, frame: int | None = None
) -> UltrasoundImage:
    """Decode one file and check it (exists, readable, finite, not empty, mask or label values)."""
    path = Path(path)
    suffix = suffix_of(path)
    if suffix not in SUPPORTED_SUFFIXES:
        raise InputError(
            path, f"unsupported file type {suffix or '(none)'!r}; expected one of {SUPPORTED_SUFFIXES}"
        )
    if not path.is_file():
        raise InputError(path, "file not found")
    if frame is not None and suffix not in DICOM_SUFFIXES:
        raise InputError(path, f"frame={frame} given, but only DICOM files have frames")
    try:
        if suffix in RASTER_SUFFIXES:
            array, spacing, affine = _read_raster(path, mask, labels)
        elif suffix in DICOM_SUFFIXES:
            array, spacing, affine = _read_dicom(path, frame)
        else:
            array, spacing, affine = _read_volume(path)
    except InputError:
        raise
    except Exception as err:  # decoders raise anything from OSError to struct.error on a corrupt file
        raise InputError(path, f"cannot read file ({type(err).__name__}: {_first_line(err)})") from err
    if labels:
        return UltrasoundImage(path, label_values(_checked(path, array, False), path), spacing, affine)
    return UltrasoundImage(path, _checked(path, array, mask), spacing, affine)


def label_values(array: np.ndarray, path: str | Path | None) -> np.ndarray:
    """An integer label map (int32): values must be non-negative integers; a 0/255 mask becomes 0/1
    (CONVENTIONS: masks on disk are 0/255 or 0/1)."""
    values = np.unique(array)
    if (values != np.round(values)).any() or values.min() < 0:
        raise InputError(path, f"label values must be non-negative integers, found {values[:5].tolist()}")
    array = array.astype(np.int32)
    if set(values.tolist()) == {0, 255} or values.tolist() == [255]:
        array //= 255
    return array


def _read_raster(path: Path, mask: bool, labels: bool) -> tuple[np.ndarray, None, np.ndarray]:
    """PNG/TIFF/JPEG/BMP through MONAI's PILReader (which already transposes to (X, Y)); no calibration."""
    reader = PILReader(converter=partial(_to_grey, mask=mask, labels=labels))
    array, _ = reader.get_data(reader.read(path))
    return array, None, np.eye(4)


def _to_grey(image: Image.Image, mask: bool, labels: bool = False) -> Image.Image:
    """One float channel for any PIL mode (RGB, RGBA, palette, 16-bit).

    Masks and label maps stay integer (fast, exact value checks); a palette image's values are its indices,
    not their colours (PASCAL VOC and many annotation tools save label maps so: 1 dark red, 2 dark green).
    A label map saved as RGB must be grey: colours are not class values.
    """
    if getattr(image, "n_frames", 1) > 1:  # converting would silently keep the first page only
        raise InputError(image.filename, f"{image.n_frames} pages; save them as separate files or as DICOM")
    if not (mask or labels):
        return image.convert("F")
    if image.mode == "P":
        return Image.fromarray(np.asarray(image))
    if labels and image.mode in ("RGB", "RGBA", "LA", "PA"):
        return _grey_labels(image)
    return image if image.mode in ("L", "I", "F") or image.mode.startswith("I;16") else image.convert("L")


def _grey_labels(image: Image.Image) -> Image.Image:
    """A label map saved in RGB(A): its one channel where every pixel is grey, else a one-line refusal."""
    rgb = np.asarray(image.convert("RGB"))
    if (rgb == rgb[..., :1]).all():
        return Image.fromarray(rgb[..., 0])
    colours = np.unique(rgb.reshape(-1, 3), axis=0)
    shown = ", ".join("#" + "".join(f"{c:02x}" for c in colour) for colour in colours[:4])
    raise InputError(
        image.filename,
        f"colour-coded label map ({len(colours)} colours: {shown}{', …' if len(colours) > 4 else ''}); "
        "convert it with `sonomuscle colour-labels DIR --colours NAME=#RRGGBB,... --out DIR`, or save the class "
        "values themselves (an indexed-colour or grey PNG/TIFF)",
    )


def _read_dicom(path: Path, frame: int | None) -> tuple[np.ndarray, tuple[float, ...] | None, np.ndarray]:
    """B-mode DICOM: frames stacked as Z (or one frame picked), colour made grey, region calibration.

    Read with pydicom directly: MONAI's PydicomReader builds CT/MR slice geometry (patient position and
    orientation), which ultrasound files lack, and puts cine frames on the first axis.
    """
    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise InputError(path, "DICOM file has no pixel data")
    pixels = ds.pixel_array  # (rows, cols[, 3]) or (frames, rows, cols[, 3]); YBR is returned as RGB
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if n_frames == 1:
        pixels = pixels[None]
    if int(ds.get("SamplesPerPixel", 1)) > 1:
        pixels = pixels.astype(np.float32) @ _LUMA
    else:
        pixels = apply_modality_lut(pixels, ds).astype(np.float32)
        if ds.get("PhotometricInterpretation") == "MONOCHROME1":  # 0 = white
            pixels = pixels.max() + pixels.min() - pixels
    if frame is not None:
        if not 0 <= frame < n_frames:
            raise InputError(path, f"frame {frame} out of range: file has {n_frames} frame(s)")
        pixels = pixels[frame : frame + 1]
    array = np.ascontiguousarray(
        pixels.transpose(2, 1, 0)
    )  # (frames, rows, cols) → (X=cols, Y=rows, Z=frames)
    spacing = _dicom_spacing(ds, path)
    if array.shape[2] == 1:
        array = array[..., 0]
    elif spacing is not None:
        # frames of a cine loop are one frame apart; a swept volume says how far apart in mm
        spacing = (*spacing, float(ds.get("SpacingBetweenSlices", 1.0)))
    return array, spacing, _diagonal_affine(spacing)


def _dicom_spacing(ds: pydicom.Dataset, path: Path) -> tuple[float, float] | None:
    """(X, Y) mm per pixel: the ultrasound region calibration, else PixelSpacing (row, col), else None."""
    deltas = {
        (10.0 * float(r.PhysicalDeltaX), 10.0 * float(r.PhysicalDeltaY))
        for r in ds.get("SequenceOfUltrasoundRegions", [])
        if r.get("RegionSpatialFormat", _US_REGION_2D) == _US_REGION_2D
        and r.get("PhysicalUnitsXDirection") == _US_UNITS_CM
        and r.get("PhysicalUnitsYDirection") == _US_UNITS_CM
        and "PhysicalDeltaX" in r
        and "PhysicalDeltaY" in r
    }
    if len(deltas) == 1:
        return deltas.pop()
    if len(deltas) > 1:
        logger.warning(
            "%s: ultrasound regions disagree on pixel size %s; spacing unknown", path, sorted(deltas)
        )
        return None
    if ds.get("PixelSpacing"):
        row, col = (float(v) for v in ds.PixelSpacing)
        return col, row
    return None


def _read_volume(path: Path) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    """NIfTI/NRRD/MHA with the same MONAI reader, array order and affine that ``LoadImage`` picks."""
    suffix = suffix_of(path)
    reader = NibabelReader() if suffix in (".nii", ".nii.gz") else ITKReader()
    volume = reader.read(path)
    if isinstance(reader, NibabelReader):
        # nibabel turns a voxel size of 0 into 1 mm on loading; the file's own header says what it knows
        with ImageOpener(path) as file:
            header = type(volume.header).from_fileobj(file, check=False)
        _check_voxel_size(path, tuple(float(z) for z in header["pixdim"][1 : volume.ndim + 1]))
    array, meta = reader.get_data(volume)
    if not is_no_channel(meta.get(MetaKeys.ORIGINAL_CHANNEL_DIM, "no_channel")) or array.ndim not in (2, 3):
        raise InputError(path, f"expected a 2D image or 3D volume with one channel, got shape {array.shape}")
    if array.ndim == 3 and array.shape[2] == 1:  # a 2D image kept as a one-slice volume (3D Slicer saves so)
        array = array[..., 0]
    affine = np.asarray(meta[MetaKeys.AFFINE], dtype=np.float64)
    spacing = tuple(float(s) for s in affine_to_spacing(affine, r=array.ndim))
    _check_voxel_size(path, spacing)
    return np.asarray(array, dtype=np.float32), spacing, affine


def _check_voxel_size(path: Path, spacing: tuple[float, ...]) -> None:
    """Refuse a voxel size that is not positive: resampling a 0 mm axis would allocate without bound."""
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(path, f"voxel size {spacing} mm in the header is not positive: fix its pixdim")


def _checked(path: Path, array: np.ndarray, mask: bool) -> np.ndarray:
    """Reject empty or non-finite images; masks become uint8 0/1."""
    if array.size == 0:
        raise InputError(path, f"empty image (shape {array.shape})")
    if array.ndim not in (2, 3):
        raise InputError(path, f"expected a 2D image or 3D volume, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise InputError(path, f"image contains {int((~np.isfinite(array)).sum())} NaN or infinite values")
    if not mask:
        return array.astype(np.float32, copy=False)
    values = np.unique(array)
    if np.isin(values, (0, 1)).all():
        return array.astype(np.uint8)
    if np.isin(values, (0, 255)).all():
        return (array == 255).astype(np.uint8)
    shown = ", ".join(f"{v:g}" for v in values[:6]) + (", …" if len(values) > 6 else "")
    raise InputError(path, f"mask values must be 0/1 or 0/255, found {shown}")


def _diagonal_affine(spacing: Sequence[float] | None) -> np.ndarray:
    affine = np.eye(4)
    if spacing is not None:
        affine[np.arange(len(spacing)), np.arange(len(spacing))] = spacing
    return affine


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "no details"


class UltrasoundImageReader(ImageReader):
    """MONAI reader for ``LoadImage(d)``: the arrays of :func:`load_image` as MetaTensors.

    The affine carries the spacing (identity when unknown) and the meta key ``"spacing_known"`` says
    whether it is calibrated, so measures can tell mm from pixels. Use ``mask=True`` for binary mask keys
    and ``labels=True`` for label maps.
    """

    def __init__(self, mask: bool = False, frame: int | None = None, labels: bool = False) -> None:
        super().__init__()
        self.mask = mask
        self.labels = labels
        self.frame = frame

    def verify_suffix(self, filename: Sequence[str | Path] | str | Path) -> bool:
        return all(suffix_of(f) in SUPPORTED_SUFFIXES for f in ensure_tuple(filename))

    def read(
        self, data: Sequence[str | Path] | str | Path, **kwargs
    ) -> UltrasoundImage | list[UltrasoundImage]:
        images = [
            read_ultrasound(f, mask=self.mask, labels=self.labels, frame=self.frame)
            for f in ensure_tuple(data)
        ]
        return images if len(images) > 1 else images[0]

    def get_data(self, img: UltrasoundImage | Sequence[UltrasoundImage]) -> tuple[np.ndarray, dict]:
        """Arrays stacked as channels when several files were read, as MONAI's own readers do."""
        arrays, meta = [], {}
        for image in ensure_tuple(img):
            header = {
                MetaKeys.AFFINE: image.affine.copy(),
                MetaKeys.ORIGINAL_AFFINE: image.affine.copy(),
                MetaKeys.SPATIAL_SHAPE: np.asarray(image.array.shape),
                MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan"),
                "spacing_known": image.spacing is not None,
            }
            arrays.append(image.array)
            _copy_compatible_dict(header, meta)
        return _stack_images(arrays, meta), meta


def decoded_tensor(image: UltrasoundImage) -> MetaTensor:
    """A decoded image (e.g. a video frame) as the channel-first float32 MetaTensor ``LoadImaged`` makes of
    a file."""
    array, meta = UltrasoundImageReader().get_data(image)
    array = array.astype(np.float32, copy=False)
    meta[ImageMetaKey.FILENAME_OR_OBJ] = str(image.path)
    tensor = MetaTensor.ensure_torch_and_prune_meta(array, meta)
    return EnsureChannelFirst()(tensor, meta_dict=meta)
