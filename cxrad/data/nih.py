"""NIH ChestX-ray14 in its official file formats.

``root`` holds ``Data_Entry_2017.csv`` or ``Data_Entry_2017_v2020.csv`` (optionally gzipped), the PNGs anywhere
below it (``images_001/images/...`` or flat), and optionally ``BBox_List_2017.csv`` and the official
``train_val_list.txt``/``test_list.txt``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cxrad.data.metadata import UNKNOWN, VIEWS, parse_view
from cxrad.data.table import NORMAL_FINDING, patients_with_findings

log = logging.getLogger(__name__)

METADATA_NAMES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
BBOX_NAME = "BBox_List_2017.csv"
NIH_BOX_FRAME = 1024  # BBox_List_2017 coordinates are in the 1024x1024 frame.


def find_file(root: Path, names: Sequence[str]) -> Path | None:
    """First of ``names`` (or its ``.gz``) directly in ``root``."""
    for name in names:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def index_images(root: Path) -> dict[str, str]:
    """Map PNG file name -> absolute path for every PNG below ``root``."""
    found: dict[str, str] = {}
    for dirpath, _, filenames in os.walk(root, followlinks=True):  # image folders are often symlinked
        for name in filenames:
            if name.lower().endswith(".png"):
                found.setdefault(name, os.path.join(dirpath, name))
    return found


def read_metadata(path: Path) -> pd.DataFrame:
    """Read ``Data_Entry_2017*.csv`` into cxrad's vocabulary (raw age/sex/view, parsed later)."""
    raw = pd.read_csv(path)
    required = ["Image Index", "Finding Labels", "Patient ID", "Patient Age", "View Position"]
    missing = [c for c in required if c not in raw.columns]
    sex_column = next((c for c in ("Patient Gender", "Patient Sex") if c in raw.columns), None)
    if missing or sex_column is None:
        msg = f"{path} is not an NIH Data_Entry file: missing {missing or ['Patient Gender']}"
        raise ValueError(msg)
    frame = pd.DataFrame(
        {
            "image_name": raw["Image Index"].astype(str),
            "finding_labels": raw["Finding Labels"].astype(str),
            "patient_id": raw["Patient ID"].astype(str),
            "age": raw["Patient Age"],
            "sex": raw[sex_column],
            "view": raw["View Position"],
        }
    )
    if {"OriginalImage[Width", "OriginalImagePixelSpacing[x"} <= set(raw.columns):
        # mm per pixel in the 1024 frame = spacing at original size x original width / 1024.
        frame["pixel_spacing_mm"] = raw["OriginalImagePixelSpacing[x"] * raw["OriginalImage[Width"] / 1024
    frame["label"] = (frame["finding_labels"] != NORMAL_FINDING).astype(int)
    return frame


def read_boxes(path: Path) -> dict[str, str]:
    """Read ``BBox_List_2017.csv`` into image name -> ``'Kind:x,y,w,h;...'`` (1024 frame)."""
    raw = pd.read_csv(path)
    raw = raw.iloc[:, :6]
    raw.columns = ["image_name", "finding", "x", "y", "w", "h"]
    boxes: dict[str, list[str]] = {}
    for row in raw.itertuples(index=False):
        coords = ",".join(str(round(float(v))) for v in (row.x, row.y, row.w, row.h))
        boxes.setdefault(row.image_name, []).append(f"{row.finding}:{coords}")
    return {name: ";".join(parts) for name, parts in boxes.items()}


def mark_findings(frame: pd.DataFrame, test_findings: Sequence[str] | None) -> pd.DataFrame:
    """Add ``excluded_finding``: True for abnormal films showing none of ``test_findings`` (none when None).

    The marked films stay in the table so that the split sees every film of a patient (under
    ``normal_patients`` a patient with an excluded finding must not train); ``prepare_samples`` drops them
    right after the split.
    """
    if not test_findings:
        return frame.assign(excluded_finding=False)
    wanted = set(test_findings)
    shows = frame["finding_labels"].str.split("|").map(lambda labels: bool(wanted & set(labels)))
    return frame.assign(excluded_finding=(frame["label"] == 1) & ~shows)


def mark_patients_with_findings(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``patient_has_finding``: whether the film's patient has any abnormal film in ``frame``.

    Computed on the whole metadata, before the view filter and the missing-image drop, so that the
    ``normal_patients`` split knows a patient's findings even when his abnormal films are not loaded.
    """
    return frame.assign(patient_has_finding=frame["patient_id"].isin(patients_with_findings(frame)))


def select_metadata(
    frame: pd.DataFrame, test_findings: Sequence[str] | None, views: Sequence[str] = ("PA", "AP", UNKNOWN)
) -> pd.DataFrame:
    """The rows of ``read_metadata``'s table that ``nih_table`` loads, marked for the split (no images needed)."""
    return select_views(mark_findings(mark_patients_with_findings(frame), test_findings), views)


def official_splits(root: Path, frame: pd.DataFrame) -> pd.Series | None:
    """'test' for films in ``test_list.txt``, '' otherwise (train/val decided by patient later)."""
    test_list = root / "test_list.txt"
    if not test_list.is_file() or not (root / "train_val_list.txt").is_file():
        return None
    test_names = set(test_list.read_text().split())
    return frame["image_name"].map(lambda name: "test" if name in test_names else "trainval")


def select_views(frame: pd.DataFrame, views: Sequence[str]) -> pd.DataFrame:
    """Keep films whose parsed view is in ``views`` ('PA', 'AP', 'unknown': blank, 'LL', ...).

    Raises:
        ValueError: naming a value of ``views`` outside the vocabulary.
    """
    allowed = (*VIEWS, UNKNOWN)
    bad = [v for v in views if v not in allowed]
    if bad:
        msg = f"data.source.views has {bad}; choose from {list(allowed)} (lateral/blank views parse as 'unknown')"
        raise ValueError(msg)
    parsed = frame["view"].map(parse_view)
    dropped = int((~parsed.isin(views)).sum())
    if dropped:
        log.info("data.source.views=%s drops %d films of other views", list(views), dropped)
    return frame[parsed.isin(views)].reset_index(drop=True)


def nih_table(
    root: str | Path,
    test_findings: Sequence[str] | None = None,
    views: Sequence[str] = ("PA", "AP", UNKNOWN),
    use_official_split: bool = True,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Load NIH ChestX-ray14 as a sample table plus a report of what was dropped and why.

    Films whose PNG is not present below ``root`` are reported (``missing_images``) and dropped, so the full
    112,120-row CSV loads even when only some image folders were downloaded. Abnormal films without one of
    ``test_findings`` stay, marked ``excluded_finding``, until ``prepare_samples`` has split the patients;
    ``patient_has_finding`` (computed before any film is dropped) keeps the ``normal_patients`` split right
    when abnormal films are missing or of an excluded view.

    Raises:
        FileNotFoundError: when ``root`` has no metadata file, or not one of the selected films' PNGs.
    """
    root = Path(root).expanduser()
    metadata_path = find_file(root, METADATA_NAMES)
    if metadata_path is None:
        msg = f"no {' or '.join(METADATA_NAMES)} in data.root={root}; point data.root at the NIH folder"
        raise FileNotFoundError(msg)
    frame = read_metadata(metadata_path)
    n_rows = len(frame)
    frame = select_metadata(frame, test_findings, views)
    selected = int((~frame["excluded_finding"]).sum())
    bbox_path = find_file(root, (BBOX_NAME,))
    boxes = read_boxes(bbox_path) if bbox_path else {}
    frame["boxes"] = frame["image_name"].map(boxes).fillna("")
    frame["boxes_frame"] = (frame["boxes"] != "").astype(int) * NIH_BOX_FRAME
    images = index_images(root)
    frame["image_path"] = frame["image_name"].map(images)
    missing = int(frame["image_path"].isna().sum())
    if missing:
        log.warning("%d of %d NIH films have no PNG below %s; they are skipped", missing, len(frame), root)
    split = official_splits(root, frame) if use_official_split else None
    if split is not None:
        frame["split"] = split
    frame = frame.dropna(subset=["image_path"]).drop(columns=["image_name"]).reset_index(drop=True)
    if frame.empty:
        raise FileNotFoundError(_no_images_message(root, n_rows, missing, len(images)))
    report = {"metadata_rows": n_rows, "missing_images": missing, "selected_films": selected}
    return frame, report


def _no_images_message(root: Path, n_rows: int, n_selected: int, n_pngs: int) -> str:
    found = f"{n_pngs} PNG file(s) below it, none named in the metadata" if n_pngs else "no PNG file below it"
    return (
        f"no images found under data.root={root}: {found} ({n_rows} metadata rows seen, {n_selected} selected by "
        "the finding/view filters). Point data.root at the folder holding images_001/images/... (or the PNGs "
        "themselves) with Data_Entry_2017*.csv beside them"
    )
