"""MIMIC-CXR-JPG (PhysioNet) in its official file formats, with ages and sexes from MIMIC-IV.

``root`` is the MIMIC-CXR-JPG folder (``physionet.org/files/mimic-cxr-jpg/2.0.0``) holding
``mimic-cxr-2.0.0-metadata.csv`` (dicom_id, subject_id, study_id, ViewPosition, StudyDate, ...),
``mimic-cxr-2.0.0-chexpert.csv`` (labels per study: subject_id, study_id, 14 CheXpert columns, -1/0/1/blank),
optionally ``mimic-cxr-2.0.0-split.csv`` (dicom_id, split), each possibly gzipped, and the JPEGs at
``files/p<first two digits>/p<subject_id>/s<study_id>/<dicom_id>.jpg``. Age and sex come from MIMIC-IV's
``patients.csv`` (subject_id, gender, anchor_age, anchor_year): the age at a study is ``anchor_age`` plus the
years from ``anchor_year`` to the study's (equally shifted) ``StudyDate``. Without it ages and sexes are unknown.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cxrad.data.adapter import check_views, finish, keep_views
from cxrad.data.labels import DEFAULT_NON_FINDINGS, apply_labels, check_policy, chexpert_labels
from cxrad.data.metadata import UNKNOWN, parse_any_view
from cxrad.data.nih import find_file, mark_findings, mark_patients_with_findings

log = logging.getLogger(__name__)

METADATA_NAME = "mimic-cxr-2.0.0-metadata.csv"
LABELS_NAME = "mimic-cxr-2.0.0-chexpert.csv"
SPLIT_NAME = "mimic-cxr-2.0.0-split.csv"
PATIENTS_NAME = "patients.csv"
OFFICIAL_TEST = "test"


def read_required(root: Path, name: str, columns: Sequence[str]) -> pd.DataFrame:
    """Read ``name`` (or ``name.gz``) from ``root``, checking ``columns``.

    Raises:
        FileNotFoundError / ValueError: naming the file and the fix.
    """
    path = find_file(root, (name,))
    if path is None:
        msg = f"no {name}(.gz) in data.source.root={root}; point it at the MIMIC-CXR-JPG folder (.../2.0.0)"
        raise FileNotFoundError(msg)
    raw = pd.read_csv(path)
    missing = [c for c in columns if c not in raw.columns]
    if missing:
        msg = f"{path} lacks column(s) {missing}; expected the MIMIC-CXR-JPG {name} format"
        raise ValueError(msg)
    return raw


def read_patients(root: Path, patients_csv: str | Path | None) -> pd.DataFrame | None:
    """MIMIC-IV ``patients.csv`` (given, or found in ``root``), or None with a warning."""
    path = Path(patients_csv).expanduser() if patients_csv else find_file(root, (PATIENTS_NAME,))
    if path is not None and not path.is_absolute() and not path.is_file():
        path = root / path
    if path is None or not path.is_file():
        log.warning(
            "no MIMIC-IV patients.csv (data.source.patients_csv=%s): ages and sexes of MIMIC-CXR are unknown",
            patients_csv,
        )
        return None
    raw = pd.read_csv(path)
    missing = [c for c in ("subject_id", "gender", "anchor_age", "anchor_year") if c not in raw.columns]
    if missing:
        msg = f"{path} lacks column(s) {missing}; data.source.patients_csv must be MIMIC-IV hosp/patients.csv"
        raise ValueError(msg)
    return raw[["subject_id", "gender", "anchor_age", "anchor_year"]]


def study_ages(films: pd.DataFrame) -> pd.Series:
    """Age at each study: ``anchor_age + (study year - anchor_year)``; NaN without a date or a patient row."""
    year = pd.to_numeric(films.get("StudyDate"), errors="coerce") // 10000
    return films["anchor_age"] + (year - films["anchor_year"])


def mimic_views(films: pd.DataFrame, views: Sequence[str]) -> pd.Series:
    """Harmonised views from ``ViewPosition``; recumbent AP films are ``AP_SUPINE`` when that view is kept."""
    kept = check_views(views)
    parsed = films["ViewPosition"].map(lambda v: parse_any_view(v, kept))
    if "AP_SUPINE" in kept and "PatientOrientationCodeSequence_CodeMeaning" in films.columns:
        lying = films["PatientOrientationCodeSequence_CodeMeaning"].astype(str).str.lower() == "recumbent"
        parsed = parsed.where(~(lying & (parsed == "AP")), "AP_SUPINE")
    return parsed


def portable(films: pd.DataFrame) -> pd.Series:
    """'yes' for portable studies (``PerformedProcedureStepDescription`` says PORTABLE), 'no', or unknown."""
    text = films["PerformedProcedureStepDescription"]
    flag = text.astype(str).str.upper().str.contains("PORTABLE").map({True: "yes", False: "no"})
    return flag.where(text.notna(), UNKNOWN)


def image_paths(root: Path, films: pd.DataFrame) -> pd.Series:
    """``root/files/pXX/p<subject>/s<study>/<dicom_id>.jpg`` of every film."""
    subject, study = films["subject_id"].astype(str), films["study_id"].astype(str)
    relative = "files/p" + subject.str[:2] + "/p" + subject + "/s" + study + "/" + films["dicom_id"].astype(str)
    return (str(root.resolve()) + "/" + relative + ".jpg").astype(str)


def mimic_table(
    root: str | Path,
    patients_csv: str | Path | None = None,
    views: Sequence[str] = ("PA", "AP"),
    uncertain: str = "exclude",
    non_findings: Sequence[str] = DEFAULT_NON_FINDINGS,
    test_findings: Sequence[str] | None = None,
    use_official_split: bool = True,
    with_portable: bool = True,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Load MIMIC-CXR-JPG as a sample table plus a report of what was dropped and why.

    Args:
        root: the MIMIC-CXR-JPG folder.
        patients_csv: MIMIC-IV ``patients.csv`` (absolute or relative to ``root``; None: looked for in ``root``).
        views: harmonised views kept (``PA``, ``AP``, ``LATERAL``, ``AP_SUPINE``, ``unknown``).
        uncertain: ``exclude`` | ``positive`` | ``negative`` (see :mod:`cxrad.data.labels`).
        non_findings: labels that never make a film abnormal.
        test_findings: abnormal films without one of these are marked ``excluded_finding`` (None: all stay).
        use_official_split: films of the split file's ``test`` are the test split (when the file is there).
        with_portable: add the ``portable`` covariate from ``PerformedProcedureStepDescription``.

    Raises:
        FileNotFoundError: when a metadata file or every image is missing.
        ValueError: on a bad ``views``/``uncertain`` value or a file of another format.
    """
    root, policy = Path(root).expanduser(), check_policy(uncertain)
    check_views(views)
    meta = read_required(root, METADATA_NAME, ("dicom_id", "subject_id", "study_id", "ViewPosition"))
    labels = read_required(root, LABELS_NAME, ("subject_id", "study_id", "No Finding"))
    films = meta.merge(labels, on=["subject_id", "study_id"], how="left")
    patients = read_patients(root, patients_csv)
    if patients is not None:
        films = films.merge(patients, on="subject_id", how="left")
    else:
        films = films.assign(gender=np.nan, anchor_age=np.nan, anchor_year=np.nan)
    frame = pd.DataFrame(
        {
            "image_path": image_paths(root, films),
            "patient_id": films["subject_id"].astype(str),
            "age": study_ages(films),
            "sex": films["gender"],
            "view": mimic_views(films, views),
        }
    )
    if with_portable and "PerformedProcedureStepDescription" in films.columns:
        frame["portable"] = portable(films)
    split_path = find_file(root, (SPLIT_NAME,)) if use_official_split else None
    if split_path is not None:
        official = pd.read_csv(split_path).set_index("dicom_id")["split"]
        frame["split"] = films["dicom_id"].map(official).eq(OFFICIAL_TEST).map({True: "test", False: "trainval"})
    frame, report = apply_labels(frame, chexpert_labels(films, policy, non_findings), policy)
    frame = mark_findings(mark_patients_with_findings(frame), test_findings)
    frame, report["dropped_views"] = keep_views(frame, views)
    return finish(frame, {"metadata_rows": len(meta), **report}, root, "MIMIC-CXR")
