"""PadChest (BIMCV, Hospital San Juan, Alicante) in its official file format.

``root`` holds ``PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv`` (optionally gzipped) and the PNGs at
``<ImageDir>/<ImageID>`` (the numbered folders of the download, ``0/`` ... ``54/``; a flat folder works too).
Columns read: ``ImageID``, ``ImageDir``, ``StudyDate_DICOM`` (YYYYMMDD), ``PatientID``, ``PatientBirth`` (year),
``PatientSex_DICOM`` (M/F/O), ``Projection`` (PA, AP, AP_horizontal, L, COSTAL, ...), ``Labels`` (a Python list
as text, ``"['normal']"`` or ``"['pleural effusion', 'nodule']"``) and, as the ``scanner`` covariate,
``Manufacturer_DICOM`` when present. PadChest has no uncertain labels. A film is normal when its labels are
``normal`` and nothing else that is a finding; abnormal with any finding; films labelled ``exclude`` (discarded
by the labellers) or without labels are dropped and counted.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cxrad.data.adapter import check_views, finish, keep_views
from cxrad.data.metadata import UNKNOWN, parse_any_view
from cxrad.data.nih import find_file, mark_findings, mark_patients_with_findings
from cxrad.data.table import NORMAL_FINDING

log = logging.getLogger(__name__)

METADATA_NAME = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"
REQUIRED = ("ImageID", "ImageDir", "StudyDate_DICOM", "PatientID", "PatientBirth", "PatientSex_DICOM", "Projection")
NORMAL = "normal"
EXCLUDE = "exclude"
DEFAULT_NON_FINDINGS = ("suboptimal study", "unchanged")


def parse_labels(text: object) -> list[str] | None:
    """``"['normal', ' nodule']"`` -> ``['normal', 'nodule']`` (stripped, lower case); None when unreadable.

    Example:
        >>> parse_labels("['pleural effusion', ' Nodule']"), parse_labels("nan"), parse_labels("[]")
        (['pleural effusion', 'nodule'], None, [])
    """
    try:
        value = ast.literal_eval(str(text))
    except (ValueError, SyntaxError):
        return None
    if not isinstance(value, list | tuple):
        return None
    return [str(v).strip().lower() for v in value if str(v).strip()]


def padchest_labels(raw: pd.Series, non_findings: Sequence[str]) -> tuple[np.ndarray, list[str], dict[str, int]]:
    """Labels (0/1, -1 dropped), '|'-joined findings and the counts of dropped films."""
    skip = {NORMAL, *(n.lower() for n in non_findings)}
    labels, findings = [], []
    counts = {"excluded_by_labellers": 0, "unlabelled": 0}
    for parsed in raw.map(parse_labels):
        found = [] if parsed is None else [f for f in parsed if f not in skip and f != EXCLUDE]
        if parsed is not None and EXCLUDE in parsed:
            labels.append(-1)
            counts["excluded_by_labellers"] += 1
        elif found:
            labels.append(1)
        elif parsed is not None and NORMAL in parsed:
            labels.append(0)
        else:
            labels.append(-1)
            counts["unlabelled"] += 1
        findings.append("|".join(dict.fromkeys(found)) or NORMAL_FINDING)
    return np.asarray(labels), findings, counts


def padchest_ages(raw: pd.DataFrame) -> pd.Series:
    """Years from ``PatientBirth`` (a year) to the study's year; NaN where either is missing."""
    study_year = pd.to_numeric(raw["StudyDate_DICOM"], errors="coerce") // 10000
    return study_year - pd.to_numeric(raw["PatientBirth"], errors="coerce")


def image_paths(root: Path, raw: pd.DataFrame) -> pd.Series:
    """``root/<ImageDir>/<ImageID>``, or ``root/<ImageID>`` when the numbered folder is absent."""
    base = str(root.resolve())
    folder = pd.to_numeric(raw["ImageDir"], errors="coerce").astype("Int64").astype(str)
    nested = base + "/" + folder + "/" + raw["ImageID"].astype(str)
    flat = base + "/" + raw["ImageID"].astype(str)
    return nested.where(nested.map(lambda p: Path(p).is_file()), flat)


def padchest_table(
    root: str | Path,
    views: Sequence[str] = ("PA", "AP"),
    non_findings: Sequence[str] = DEFAULT_NON_FINDINGS,
    test_findings: Sequence[str] | None = None,
    with_scanner: bool = True,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Load PadChest as a sample table plus a report of what was dropped and why.

    Args:
        root: folder holding the CSV and the image folders.
        views: harmonised views kept (``PA``, ``AP``, ``AP_SUPINE`` for ``AP_horizontal``, ``LATERAL`` for
            ``L``, ``unknown`` for ``COSTAL`` and the rest); without ``AP_SUPINE``, ``AP_horizontal`` is ``AP``.
        non_findings: labels that never make a film abnormal.
        test_findings: abnormal films without one of these (lower case, e.g. ``nodule``) are marked
            ``excluded_finding`` (None: all stay).
        with_scanner: add the ``scanner`` covariate from ``Manufacturer_DICOM``.

    Raises:
        FileNotFoundError: when the CSV or every image is missing.
        ValueError: on a bad ``views`` value or a CSV of another format.
    """
    root = Path(root).expanduser()
    kept = check_views(views)
    path = find_file(root, (METADATA_NAME,))
    if path is None:
        msg = f"no {METADATA_NAME}(.gz) in data.source.root={root}; point it at the PadChest folder"
        raise FileNotFoundError(msg)
    raw = pd.read_csv(path, low_memory=False)
    missing = [c for c in (*REQUIRED, "Labels") if c not in raw.columns]
    if missing:
        msg = f"{path} lacks column(s) {missing}; expected the PadChest labels CSV"
        raise ValueError(msg)
    label, findings, counts = padchest_labels(raw["Labels"], non_findings)
    frame = pd.DataFrame(
        {
            "image_path": image_paths(root, raw),
            "patient_id": raw["PatientID"].astype(str),
            "age": padchest_ages(raw),
            "sex": raw["PatientSex_DICOM"],
            "view": raw["Projection"].map(lambda v: parse_any_view(v, kept)),
            "label": label,
            "finding_labels": findings,
        }
    )
    if with_scanner and "Manufacturer_DICOM" in raw.columns:
        frame["scanner"] = raw["Manufacturer_DICOM"].where(raw["Manufacturer_DICOM"].notna(), UNKNOWN)
    if (label == -1).any():
        log.info("dropping %d PadChest films without a usable label (%s)", int((label == -1).sum()), counts)
    frame = frame[label != -1].reset_index(drop=True)
    frame = mark_findings(mark_patients_with_findings(frame), test_findings)
    frame, counts["dropped_views"] = keep_views(frame, views)
    return finish(frame, {"metadata_rows": len(raw), **counts}, root, "PadChest")
