"""Pre-flight checks of a sample table: bad rows and bad files are skipped and recorded, before any training.

Structural problems (no usable label at all, every film skipped) raise with the fix; per-film problems
(a truncated PNG, a 20-pixel thumbnail, a decompression bomb, the same film listed twice) remove that row and
add it to the skip table that the run writes as ``skipped.csv`` (``image_path, reason, detail``). Each file is
read once: its bytes are hashed (duplicates) and its header and chunk checksums are verified (PNG) or its DICOM
header parsed; pixels are not decoded. Blank age/sex/view/patient_id cells of DICOM films are filled from tags.

Films that pass these checks but still fail to decode are caught by :class:`cxrad.data.dataset.CxrDataset`
and appended to the run's skip table as ``decode_failed``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from cxrad.console import progress
from cxrad.data.table import require_columns
from cxrad.preprocessing.dicom import (
    DICOM_DECODER_HINT,
    DICOM_EXTENSIONS,
    DecodeError,
    DicomHeader,
    read_dicom_header,
)

log = logging.getLogger(__name__)

SKIP_COLUMNS = ("image_path", "reason", "detail")
DECODE_SKIP_LOG = ".skipped_at_decode.csv"  # in the run dir while it runs; merged into skipped.csv
MAX_FILE_BYTES = 1 << 30  # a chest film is tens of MB at most; larger files are not read at all
TAG_COLUMNS = ("age", "sex", "view", "patient_id")


@dataclass(frozen=True)
class ScanConfig:
    """What the pre-flight scan accepts (``data.checks`` plus the network input size).

    Args:
        min_side: films whose shorter side is below this many pixels are skipped (upscaling them ~4x or
            more invents the texture the detector scores).
        max_megapixels: films above this are refused before decoding (decompression bombs).
        deduplicate: skip files whose bytes repeat an earlier row's (a film listed under two names).
        image_size: the network input size (``preprocessing.image_size``); 0 = unknown.
    """

    min_side: int = 64
    max_megapixels: float = 100.0
    deduplicate: bool = True
    image_size: int = 0

    @classmethod
    def from_config(cls, checks: dict | None, image_size: int) -> ScanConfig:
        """From ``data.checks`` (``min_side_fraction`` of ``image_size``, ``max_megapixels``, ``deduplicate``)."""
        checks = dict(checks or {})
        fraction = float(checks.pop("min_side_fraction", 0.25))
        unknown = set(checks) - {"max_megapixels", "deduplicate"}
        if unknown:
            msg = f"unknown data.checks key(s) {sorted(unknown)}; use min_side_fraction, max_megapixels, deduplicate"
            raise ValueError(msg)
        return cls(min_side=int(image_size * fraction), image_size=int(image_size), **checks)


@dataclass(frozen=True)
class FileReport:
    """One file's verdict: ``reason`` is '' when the film is usable."""

    reason: str = ""
    detail: str = ""
    digest: str = ""
    tags: dict[str, str] = field(default_factory=dict)


def skip_table(paths: list[str] | pd.Series, reasons: str | list[str], details: str | list[str]) -> pd.DataFrame:
    """A skip table (``image_path, reason, detail``); a single reason or detail applies to every path."""
    paths = list(paths)
    reasons = [reasons] * len(paths) if isinstance(reasons, str) else list(reasons)
    details = [details] * len(paths) if isinstance(details, str) else list(details)
    return pd.DataFrame({"image_path": paths, "reason": reasons, "detail": details}, dtype=object)


def inspect_file(path: str | Path, config: ScanConfig) -> FileReport:
    """Check one film without decoding its pixels: exists, not empty, intact, plausible size."""
    path = Path(path)
    if not path.is_file():
        return FileReport("file_not_found", f"no file at {path}")
    try:
        size = path.stat().st_size
        data = path.read_bytes() if 0 < size <= MAX_FILE_BYTES else b""
    except OSError as error:  # permissions, a vanished network mount
        return FileReport("unreadable", f"cannot read the file: {error}")
    if size == 0:
        return FileReport("empty_file", "the file has 0 bytes (an interrupted download or copy?)")
    if size > MAX_FILE_BYTES:
        return FileReport("too_large", f"{size / 2**20:.0f} MiB file; no chest film is this large")
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    dicom = path.suffix.lower() in DICOM_EXTENSIONS or data[128:132] == b"DICM"
    report = _inspect_dicom(data) if dicom else _inspect_image(data)
    if report.reason:
        return FileReport(report.reason, report.detail, digest)
    return FileReport(_size_problem(report.tags, config), _size_detail(report.tags, config), digest, report.tags)


def _inspect_image(data: bytes) -> FileReport:
    try:
        with warnings.catch_warnings():  # the scan applies its own pixel limit (max_megapixels)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                image.verify()  # PNG: every chunk's CRC and the end marker; pixels stay compressed
    except Image.DecompressionBombError as error:
        return FileReport("too_large", str(error))
    except UnidentifiedImageError:
        return FileReport("unreadable", "not an image format Pillow/OpenCV recognise (or not DICOM)")
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        return FileReport("corrupt", f"truncated or corrupt image: {error}")
    return FileReport(tags={"width": str(width), "height": str(height)})


def _inspect_dicom(data: bytes) -> FileReport:
    try:
        header: DicomHeader = read_dicom_header(io.BytesIO(data))
    except DecodeError as error:
        return FileReport("unreadable", str(error))
    if not header.has_pixels or not header.rows or not header.columns:
        return FileReport("no_pixel_data", "DICOM without (complete) pixel data, e.g. a structured report")
    if not header.decodable:
        return FileReport("no_decoder", f"no decoder for {header.transfer_syntax}: {DICOM_DECODER_HINT}")
    tags = {"width": str(header.columns), "height": str(header.rows)}
    tags.update({k: getattr(header, k) for k in TAG_COLUMNS if getattr(header, k).strip()})
    return FileReport(tags=tags)


def _size_problem(tags: dict[str, str], config: ScanConfig) -> str:
    width, height = int(tags["width"]), int(tags["height"])
    if width * height > config.max_megapixels * 1e6:
        return "too_large"
    return "too_small" if min(width, height) < config.min_side else ""


def _size_detail(tags: dict[str, str], config: ScanConfig) -> str:
    size = f"{tags['width']}x{tags['height']} px"
    return {
        "too_large": f"{size} exceeds data.checks.max_megapixels={config.max_megapixels:g}",
        "too_small": f"{size}: shorter side below {config.min_side} px (data.checks.min_side_fraction)",
    }.get(_size_problem(tags, config), "")


def check_labels(frame: pd.DataFrame, source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep rows with an image path and a 0/1 label; the rest become skips.

    Raises:
        ValueError: when no row has a valid label (a wrong column, not a few bad rows).
    """
    label = pd.to_numeric(frame["label"], errors="coerce")
    good_label = label.isin([0, 1])
    if len(frame) and not good_label.any():
        examples = frame["label"].drop_duplicates().head(5).tolist()
        msg = f"{source}: column 'label' has no 0/1 value (e.g. {examples}); use 0 for normal, 1 for abnormal films"
        raise ValueError(msg)
    path = frame["image_path"].fillna("").astype(str).str.strip()
    skips = [
        skip_table(frame.loc[path == "", "image_path"].fillna(""), "missing_path", "blank image_path"),
        skip_table(
            path[(path != "") & ~good_label],
            "bad_label",
            [f"label {v!r} is not 0 (normal) or 1 (abnormal)" for v in frame.loc[(path != "") & ~good_label, "label"]],
        ),
    ]
    keep = (path != "") & good_label
    out = frame[keep].copy()
    out["label"] = label[keep].astype(int)
    return out, pd.concat(skips, ignore_index=True)


def screen_samples(
    frame: pd.DataFrame, config: ScanConfig, source: str = "the data source"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Remove bad rows and bad files from a source table; return ``(kept rows, skip table)``.

    Raises:
        ValueError: when a required column is missing, no label is usable, or every film is skipped.
    """
    require_columns(frame, source)
    frame, skips = check_labels(frame.reset_index(drop=True), source)
    repeated = frame["image_path"].duplicated()
    skips = pd.concat([skips, skip_table(frame.loc[repeated, "image_path"], "duplicate_path", "listed twice")])
    frame = frame[~repeated]
    reports = [inspect_file(p, config) for p in progress(frame["image_path"], "checking films", "film")]
    warn_upsampling([r for r in reports if not r.reason], config.image_size)
    frame, file_skips = _apply_reports(frame, reports, config)
    skips = pd.concat([skips, file_skips], ignore_index=True).reset_index(drop=True)
    _log_skips(skips, len(frame))
    if frame.empty:
        counts = skips["reason"].value_counts().to_dict()
        first = skips.head(3).to_dict("records")
        msg = f"{source}: all {len(skips)} films were skipped by the pre-flight checks ({counts}); first ones: {first}"
        raise ValueError(msg)
    return frame.reset_index(drop=True), skips


# Upsampling beyond this factor is named in the log: on the real development films (64 px), PatchCore and the
# global Gaussian ranked disease inside a view better at 128 px (2x) than at 224 px (3.5x); see the ``@224``
# rows of experiments/real_films.md.
WARN_UPSAMPLING = 2.0


def warn_upsampling(reports: list[FileReport], image_size: int) -> float | None:
    """Log a warning when ``image_size`` upsamples the median film more than :data:`WARN_UPSAMPLING` x.

    Returns the factor (None when no film's size is known).
    """
    sides = [min(int(r.tags["width"]), int(r.tags["height"])) for r in reports if "width" in r.tags]
    if not sides or image_size <= 0:
        return None
    median = float(np.median(sides))
    factor = image_size / median
    if factor > WARN_UPSAMPLING:
        log.warning(
            "preprocessing.image_size=%d upsamples the films %.1fx (median shorter side %.0f px); on the real "
            "development films detectors found less disease at 3.5x than at 2x (experiments/real_films.md, @224 "
            "rows): consider preprocessing.image_size=%d",
            image_size,
            factor,
            median,
            int(32 * round(WARN_UPSAMPLING * median / 32)),
        )
    return factor


def _apply_reports(
    frame: pd.DataFrame, reports: list[FileReport], config: ScanConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop bad and duplicate files; fill blank metadata from DICOM tags."""
    frame = frame.copy()
    bad = pd.Series([bool(r.reason) for r in reports], index=frame.index)
    failed = [r for r in reports if r.reason]
    skips = [skip_table(frame.loc[bad, "image_path"], [r.reason for r in failed], [r.detail for r in failed])]
    digests = pd.Series([r.digest for r in reports], index=frame.index)
    if config.deduplicate:
        first_of = dict(zip(digests[~bad][::-1], frame.loc[~bad, "image_path"][::-1], strict=True))
        copies = ~bad & digests.duplicated()
        details = [f"same bytes as {first_of[d]}" for d in digests[copies]]
        skips.append(skip_table(frame.loc[copies, "image_path"], "duplicate_content", details))
        bad |= copies
    for column in TAG_COLUMNS:
        tag = pd.Series([r.tags.get(column, "") for r in reports], index=frame.index)
        if column not in frame.columns:
            frame[column] = None
        fill = (frame[column].isna() | (frame[column].astype(str).str.strip() == "")) & (tag != "")
        if fill.any():  # CSV values win; tags fill only blank cells
            frame[column] = frame[column].astype(object)
            frame.loc[fill, column] = tag[fill]
    return frame[~bad], pd.concat(skips, ignore_index=True)


def _log_skips(skips: pd.DataFrame, kept: int) -> None:
    if len(skips):
        counts = skips["reason"].value_counts().to_dict()
        log.warning("skipping %d film(s) (%s), keeping %d; the run lists them in skipped.csv", len(skips), counts, kept)


def skip_counts(skips: pd.DataFrame) -> dict[str, object]:
    """``n_skipped`` and ``skipped_by_reason`` for ``metrics.json``."""
    return {"n_skipped": len(skips), "skipped_by_reason": skips["reason"].value_counts().sort_index().to_dict()}


def record_skip(log_path: Path | None, image_path: str, reason: str, detail: str) -> None:
    """Append one skip to a run's log; one short ``write`` per line, so DataLoader workers don't interleave."""
    log.warning("skipping %s: %s (%s)", image_path, reason, detail)
    if log_path is None:
        return
    buffer = io.StringIO()
    csv.writer(buffer).writerow([image_path, reason, detail[:500]])
    with log_path.open("a", encoding="utf-8") as handle:
        handle.write(buffer.getvalue())


def with_logged_skips(skips: pd.DataFrame, log_path: Path) -> pd.DataFrame:
    """The pre-flight skips plus those a run logged at decode time (each film once); the log is removed."""
    if not log_path.is_file():
        return skips
    logged = pd.read_csv(log_path, names=list(SKIP_COLUMNS), header=None, dtype=str, keep_default_na=False)
    log_path.unlink()
    logged = logged.drop_duplicates("image_path")  # a film fails again in every epoch that reads it
    return pd.concat([skips, logged[~logged["image_path"].isin(skips["image_path"])]], ignore_index=True)
