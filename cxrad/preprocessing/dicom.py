"""DICOM films: pixels with the display pipeline applied, header facts and metadata tags (pydicom).

Pixels go through the DICOM grayscale pipeline in its standard order: modality LUT (rescale slope/intercept),
VOI LUT or window centre/width, then MONOCHROME1 films (bright = air) are inverted so that bone is always bright,
as in every PNG dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder

DICOM_EXTENSIONS = (".dcm", ".dicom")
DICOM_DECODER_HINT = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg (or python-gdcm)"


class DecodeError(ValueError):
    """A film that exists but cannot be decoded into pixels (corrupt, truncated, unsupported)."""


@dataclass(frozen=True)
class DicomHeader:
    """What a DICOM header says about a film, read without decoding its pixels.

    ``age``/``sex``/``view``/``patient_id`` are the raw tag values ('' when absent), parsed later by
    :mod:`cxrad.data.metadata`.
    """

    rows: int
    columns: int
    has_pixels: bool
    decodable: bool
    transfer_syntax: str
    age: str = ""
    sex: str = ""
    view: str = ""
    patient_id: str = ""


def is_dicom(path: str | Path) -> bool:
    """True for ``.dcm``/``.dicom`` files and for any file with the 'DICM' marker at byte 128."""
    path = Path(path)
    if path.suffix.lower() in DICOM_EXTENSIONS:
        return True
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def read_dicom_header(source: str | Path | BinaryIO) -> DicomHeader:
    """Read size, pixel presence and metadata tags without decoding the pixels.

    Raises:
        DecodeError: when the file is not DICOM or its header is unreadable.
    """
    try:
        ds = pydicom.dcmread(source, force=False)
    except (InvalidDicomError, OSError, ValueError, EOFError) as error:
        msg = f"not a readable DICOM file ({error})"
        raise DecodeError(msg) from error
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    return DicomHeader(
        rows=int(ds.get("Rows", 0) or 0),
        columns=int(ds.get("Columns", 0) or 0),
        has_pixels="PixelData" in ds and _pixel_bytes_complete(ds),
        decodable=_decodable(syntax),
        transfer_syntax=str(getattr(syntax, "name", syntax or "unknown")),
        age=str(ds.get("PatientAge", "") or ""),
        sex=str(ds.get("PatientSex", "") or ""),
        view=str(ds.get("ViewPosition", "") or ""),
        patient_id=str(ds.get("PatientID", "") or ""),
    )


def _decodable(syntax: pydicom.uid.UID | None) -> bool:
    if syntax is None:
        return True
    try:
        return get_decoder(syntax).is_available
    except NotImplementedError:  # a private or unknown transfer syntax
        return False


def _pixel_bytes_complete(ds: pydicom.Dataset) -> bool:
    """False when uncompressed pixel data is shorter than Rows x Columns x frames says (a truncated file)."""
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is not None and syntax.is_compressed:
        return len(ds.PixelData) > 0
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.get("BitsAllocated", 8) or 8)
    expected = int(ds.get("Rows", 0)) * int(ds.get("Columns", 0)) * frames * samples * bits // 8
    return len(ds.PixelData) >= expected


def read_dicom(path: str | Path) -> np.ndarray:
    """Decode a DICOM film to 8-bit grayscale with modality LUT, VOI/windowing and MONOCHROME1 inversion.

    Multi-frame files yield their first frame; colour files are converted to gray.

    Raises:
        DecodeError: naming the file and, for compressed files without a decoder, the package to install.
    """
    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
    except (RuntimeError, NotImplementedError) as error:  # pydicom: no decoder for this transfer syntax
        msg = f"cannot decode DICOM {path} ({error}); for compressed DICOM: {DICOM_DECODER_HINT}"
        raise DecodeError(msg) from error
    except Exception as error:  # malformed files raise many types inside pydicom; all mean "cannot decode"
        msg = f"cannot decode DICOM {path}: {type(error).__name__}: {error}"
        raise DecodeError(msg) from error
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if pixels.ndim == 4 or (pixels.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) == 1):
        pixels = pixels[0]  # multi-frame: the first frame
    if pixels.ndim == 3:  # RGB (pydicom already converted YBR to RGB)
        return cv2.cvtColor(_stretch(pixels.astype(np.float64)), cv2.COLOR_RGB2GRAY)
    values = apply_voi_lut(apply_modality_lut(pixels, ds), ds)
    gray = _stretch(np.asarray(values, dtype=np.float64))
    return 255 - gray if photometric == "MONOCHROME1" else gray


def _stretch(values: np.ndarray) -> np.ndarray:
    """Min-max to uint8 (a constant film becomes zeros)."""
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)
