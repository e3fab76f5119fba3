"""A folder of films as a data source: labels from sub-folders, metadata from DICOM tags (or unknown).

``root/normal/**`` holds normal films and ``root/abnormal/**`` abnormal ones (names configurable); a folder
directly below ``abnormal`` names the finding (``abnormal/Nodule/x.dcm``). PNG, JPEG, TIFF, BMP and DICOM
files count (DICOM also without an extension); age, sex, view and patient id come from DICOM tags during the
pre-flight checks and stay unknown for other formats.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from cxrad.preprocessing.dicom import is_dicom

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom")


def list_films(folder: str | Path) -> list[str]:
    """Absolute paths of the films below ``folder`` (sorted; hidden files and other formats are left out)."""
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith("."))
    films = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES or (not p.suffix and is_dicom(p))]
    if len(films) < len(files):
        log.info("%s: %d file(s) of other types are not films and are left out", folder, len(files) - len(films))
    return [str(p.resolve()) for p in films]


def folder_table(
    root: str | Path, normal_dir: str = "normal", abnormal_dir: str = "abnormal"
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Load ``root/normal_dir`` (label 0) and ``root/abnormal_dir`` (label 1) as a sample table.

    Raises:
        FileNotFoundError: naming the missing sub-folder, or ``root`` when it holds no film at all.
    """
    root = Path(root).expanduser()
    parts = []
    for label, name in ((0, normal_dir), (1, abnormal_dir)):
        folder = root / name
        if not folder.is_dir():
            msg = (
                f"no folder {folder}: data.source.root={root} must hold {normal_dir}/ (normal films) and "
                f"{abnormal_dir}/ (abnormal films); set data.source.normal_dir/abnormal_dir to your names"
            )
            raise FileNotFoundError(msg)
        paths = list_films(folder)
        parts.append(pd.DataFrame({"image_path": paths, "label": label, "finding_labels": _findings(folder, paths)}))
    frame = pd.concat(parts, ignore_index=True)
    if frame.empty:
        msg = f"no images found under data.root={root}: {normal_dir}/ and {abnormal_dir}/ hold no {IMAGE_SUFFIXES}"
        raise FileNotFoundError(msg)
    frame.loc[frame["label"] == 0, "finding_labels"] = "No Finding"
    for column in ("age", "sex", "view", "patient_id"):  # filled from DICOM tags by the pre-flight checks
        frame[column] = None
    return frame, {"metadata_rows": len(frame), "missing_images": 0}


def _findings(folder: Path, paths: list[str]) -> list[str]:
    """The sub-folder directly below ``folder`` (the finding), or 'Abnormal' for films directly in it."""
    names = [Path(p).relative_to(folder.resolve()).parts for p in paths]
    return [parts[0] if len(parts) > 1 else "Abnormal" for parts in names]
