"""Writers of good and bad film files for tests: PNG modes, damaged PNGs, DICOM with and without tags."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def gradient(size: int = 64, high: int = 255) -> np.ndarray:
    """A left-to-right ramp from 0 to ``high`` (uint16 when ``high`` > 255)."""
    ramp = np.linspace(0, high, size).round()
    return np.tile(ramp, (size, 1)).astype(np.uint16 if high > 255 else np.uint8)


def write_png(path: Path, pixels: np.ndarray, mode: str = "gray") -> Path:
    """Write ``pixels`` (uint8 gray) as a PNG of ``mode``: gray, gray16, rgb, rgba, la, palette."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "gray16":
        cv2.imwrite(str(path), pixels.astype(np.uint16) * 257)
    elif mode in ("rgb", "rgba", "la", "palette"):
        pil_mode = {"rgb": "RGB", "rgba": "RGBA", "la": "LA", "palette": "P"}[mode]
        Image.fromarray(pixels).convert(pil_mode).save(path)
    else:
        cv2.imwrite(str(path), pixels)
    return path


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, at = [], len(PNG_SIGNATURE)
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        chunks.append((data[at + 4 : at + 8], data[at + 8 : at + 8 + length]))
        at += 12 + length
    return chunks


def build_png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A PNG file from ``(type, data)`` chunks, with correct CRCs."""
    out = PNG_SIGNATURE
    for kind, body in chunks:
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return out


def write_truncated_png(path: Path, pixels: np.ndarray) -> Path:
    """A PNG cut in half (an interrupted download)."""
    write_png(path, pixels)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_undecodable_png(path: Path, pixels: np.ndarray) -> Path:
    """A PNG whose chunks and CRCs are intact but whose compressed pixels are garbage: passes header checks."""
    write_png(path, pixels)
    chunks = [(k, zlib.compress(b"\x00" * 10) if k == b"IDAT" else b) for k, b in png_chunks(path.read_bytes())]
    path.write_bytes(build_png(chunks))
    return path


def write_png_header(path: Path, width: int, height: int) -> Path:
    """A tiny file whose PNG header claims ``width`` x ``height`` pixels (a decompression bomb's header)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(build_png([(b"IHDR", header), (b"IDAT", zlib.compress(b"\x00" * 16)), (b"IEND", b"")]))
    return path


def write_dicom(
    path: Path,
    stored: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple[float, float] | None = None,
    tags: dict[str, str] | None = None,
    pixels: bool = True,
) -> Path:
    """Write a DX DICOM of unsigned ``stored`` values, with optional rescale, window and patient tags."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = DX_STORAGE, meta.MediaStorageSOPInstanceUID, "DX"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept or 0.0, "US"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    for name, value in (tags or {}).items():
        setattr(ds, name, value)
    if pixels:
        ds.PixelData = stored.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def dicom_from_png(source: Path, path: Path, tags: dict[str, str], monochrome1: bool = True) -> Path:
    """A 12-bit DICOM of a PNG film (inverted and stored as MONOCHROME1 by default), with ``tags``."""
    gray = cv2.imread(str(source), cv2.IMREAD_GRAYSCALE).astype(np.uint16) * 16
    stored = 4095 - gray if monochrome1 else gray
    return write_dicom(path, stored, photometric="MONOCHROME1" if monochrome1 else "MONOCHROME2", tags=tags)
