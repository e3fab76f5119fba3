"""CheXpert (Stanford) in its official file formats.

``root`` is the folder holding ``train.csv`` and ``valid.csv`` (``CheXpert-v1.0`` or ``CheXpert-v1.0-small``).
Their ``Path`` column names each JPEG relative to the folder above it (``CheXpert-v1.0-small/train/patient00001/
study1/view1_frontal.jpg``); paths relative to ``root`` itself are accepted too. Columns read: ``Path``, ``Sex``
(Male/Female/Unknown), ``Age`` (years; 0 is unknown), ``Frontal/Lateral``, ``AP/PA`` and ``No Finding`` plus
the 13 findings (1.0 / 0.0 / -1.0 uncertain / blank), labelled by :mod:`cxrad.data.labels` under
``data.uncertain``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cxrad.data.adapter import check_views, finish, keep_views
from cxrad.data.labels import DEFAULT_NON_FINDINGS, apply_labels, check_policy, chexpert_labels
from cxrad.data.metadata import UNKNOWN, parse_any_view
from cxrad.data.nih import mark_findings, mark_patients_with_findings

CSV_FILES = ("train.csv", "valid.csv")
REQUIRED = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding")
TEST_FILE = "valid.csv"  # the radiologist-labelled set: the test split under use_official_split


def read_csv(path: Path) -> pd.DataFrame:
    """Read one CheXpert CSV, checking its columns.

    Raises:
        ValueError: naming the file and the columns it lacks.
    """
    raw = pd.read_csv(path)
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        msg = f"{path} is not a CheXpert CSV: missing column(s) {missing} (it has {list(raw.columns)[:8]}...)"
        raise ValueError(msg)
    return raw


def chexpert_views(raw: pd.DataFrame, views: Sequence[str]) -> pd.Series:
    """Harmonised view: ``LATERAL`` for lateral films, else the ``AP/PA`` column parsed into ``views``."""
    kept = tuple(v for v in views if v != UNKNOWN)
    lateral = raw["Frontal/Lateral"].astype(str).str.strip().str.lower() == "lateral"
    frontal = raw["AP/PA"].map(lambda v: parse_any_view(v, kept))
    return frontal.where(~lateral, "LATERAL" if "LATERAL" in kept else UNKNOWN)


def resolve_paths(paths: pd.Series, root: Path) -> pd.Series:
    """Absolute image paths: ``Path`` is relative to ``root``'s parent (official) or to ``root``."""
    relative = paths.astype(str)
    first = relative.iloc[0] if len(relative) else ""
    above = (root.parent / first).is_file() or not (root / first).is_file()
    base = root.parent if above else root
    return relative.map(lambda p: str((base / p).resolve()))


def chexpert_table(
    root: str | Path,
    csv_files: Sequence[str] = CSV_FILES,
    views: Sequence[str] = ("PA", "AP"),
    uncertain: str = "exclude",
    non_findings: Sequence[str] = DEFAULT_NON_FINDINGS,
    test_findings: Sequence[str] | None = None,
    use_official_split: bool = False,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Load CheXpert as a sample table plus a report of what was dropped and why.

    Args:
        root: folder holding the CSVs.
        csv_files: which of them to read.
        views: harmonised views kept (``PA``, ``AP``, ``LATERAL``, ``unknown``).
        uncertain: ``exclude`` | ``positive`` | ``negative`` (see :mod:`cxrad.data.labels`).
        non_findings: labels that never make a film abnormal.
        test_findings: abnormal films without one of these are marked ``excluded_finding`` (None: all stay).
        use_official_split: ``valid.csv`` films become the test split, the others are divided by patient.

    Raises:
        FileNotFoundError: when a CSV or every image is missing.
        ValueError: on a bad ``views``/``uncertain`` value or a CSV of another format.
    """
    root, policy = Path(root).expanduser(), check_policy(uncertain)
    check_views(views)
    frames = []
    for name in csv_files:
        path = root / name
        if not path.is_file():
            msg = f"no {name} in data.source.root={root}; point it at the CheXpert folder holding {list(CSV_FILES)}"
            raise FileNotFoundError(msg)
        frames.append(read_csv(path).assign(_file=name))
    raw = pd.concat(frames, ignore_index=True)
    frame = pd.DataFrame(
        {
            "image_path": resolve_paths(raw["Path"], root),
            "patient_id": raw["Path"].astype(str).str.extract(r"(patient\d+)", expand=False),
            # CheXpert writes Age 0 for a few adults whose age is not known: 0 is unknown here, not a newborn.
            "age": raw["Age"].where(pd.to_numeric(raw["Age"], errors="coerce") > 0),
            "sex": raw["Sex"],
            "view": chexpert_views(raw, views),
        }
    )
    if use_official_split:
        frame["split"] = (raw["_file"] == TEST_FILE).map({True: "test", False: "trainval"})
    frame, report = apply_labels(frame, chexpert_labels(raw, policy, non_findings), policy)
    frame = mark_findings(mark_patients_with_findings(frame), test_findings)
    frame, report["dropped_views"] = keep_views(frame, views)
    return finish(frame, {"metadata_rows": len(raw), **report}, root, "CheXpert")
