"""The MIMIC-CXR-JPG adapter on files written in the official metadata/chexpert/split and MIMIC-IV formats."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from cxrad.data.labels import CHEXPERT_FINDINGS
from cxrad.data.mimic import mimic_table
from tests.adapter_films import load_pipeline, write_film

# (dicom_id, subject_id, study_id, ViewPosition, StudyDate, orientation, procedure)
FILMS = [
    ("d1", 10000032, 50000001, "PA", 21800506, "Erect", "CHEST (PA AND LAT)"),
    ("d2", 10000032, 50000001, "LATERAL", 21800506, "Erect", "CHEST (PA AND LAT)"),
    ("d3", 10000032, 50000002, "AP", 21830412, "Recumbent", "CHEST (PORTABLE AP)"),
    ("d4", 10000764, 50000003, "AP", 21320101, "Erect", "CHEST (PORTABLE AP)"),
    ("d5", 10000764, 50000004, "PA", 21330101, "Erect", None),
    ("d6", 19999999, 50000005, "PA", 21500101, "Erect", "CHEST (PA AND LAT)"),  # not in patients.csv
]
# Labels per study: No Finding and one finding; -1 uncertain.
STUDY_LABELS = {
    50000001: {"No Finding": 1.0},
    50000002: {"Pleural Effusion": 1.0, "Edema": 0.0},
    50000003: {"Pneumonia": -1.0},
    50000004: {"Support Devices": 1.0, "No Finding": 1.0},
    50000005: {"Cardiomegaly": 1.0},
}
PATIENTS = [(10000032, "F", 52, 2180), (10000764, "M", 86, 2132)]


def write_mimic(
    tmp_path: Path, films: list[tuple], study_labels: dict, split: dict | None = None, patients: list = PATIENTS
) -> Path:
    root = tmp_path / "mimic-cxr-jpg" / "2.0.0"
    root.mkdir(parents=True)
    meta = pd.DataFrame(
        films,
        columns=[
            "dicom_id",
            "subject_id",
            "study_id",
            "ViewPosition",
            "StudyDate",
            "PatientOrientationCodeSequence_CodeMeaning",
            "PerformedProcedureStepDescription",
        ],
    )
    meta.to_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", index=False)
    studies = meta.drop_duplicates("study_id")[["subject_id", "study_id"]]
    labels = pd.DataFrame([study_labels.get(s, {}) for s in studies.study_id], columns=CHEXPERT_FINDINGS)
    labels.insert(0, "No Finding", [study_labels.get(s, {}).get("No Finding") for s in studies.study_id])
    chexpert = pd.concat([studies.reset_index(drop=True), labels], axis=1)
    chexpert.to_csv(root / "mimic-cxr-2.0.0-chexpert.csv", index=False)
    pd.DataFrame(patients, columns=["subject_id", "gender", "anchor_age", "anchor_year"]).assign(
        anchor_year_group="2008 - 2010", dod=None
    ).to_csv(tmp_path / "patients.csv.gz", index=False)
    if split:
        pd.DataFrame({"dicom_id": list(split), "split": list(split.values())}).to_csv(
            root / "mimic-cxr-2.0.0-split.csv", index=False
        )
    for seed, (dicom, subject, study, *_) in enumerate(films):
        write_film(root / f"files/p{str(subject)[:2]}/p{subject}/s{study}/{dicom}.jpg", seed)
    return root


def test_harmonised_table_ages_sexes_views_labels_and_patients(tmp_path: Path) -> None:
    root = write_mimic(tmp_path, FILMS, STUDY_LABELS)
    frame, report = mimic_table(root, patients_csv=tmp_path / "patients.csv.gz", views=["PA", "AP", "LATERAL"])
    films = frame.set_index(frame.image_path.str.extract(r"(d\d)\.jpg$", expand=False))
    # Age at the study = anchor_age + (study year - anchor_year): 52 at 2180, 55 at 2183.
    assert films.loc[["d1", "d3"], "age"].tolist() == [52, 55]
    assert films.loc["d5", "age"] == 87 and films.loc["d5", "sex"] == "M"
    assert math.isnan(films.loc["d6", "age"]) and pd.isna(films.loc["d6", "sex"])  # no patients.csv row
    assert films.loc[["d1", "d2", "d3"], "view"].tolist() == ["PA", "LATERAL", "AP"]
    assert films.loc[["d1", "d3", "d5", "d6"], "label"].tolist() == [0, 1, 0, 1]
    assert films.loc["d3", "finding_labels"] == "Pleural Effusion"
    assert "d4" not in films.index  # its study's only finding is uncertain (exclude)
    assert report["uncertain_films"] == 1 and report["uncertain_excluded"] == 1
    assert films.loc[["d1", "d3", "d5"], "portable"].tolist() == ["no", "yes", "unknown"]
    assert sorted(frame.patient_id.unique()) == ["10000032", "10000764", "19999999"]
    assert frame.patient_has_finding[frame.patient_id == "10000032"].all()  # d3 makes the patient sick


def test_recumbent_ap_is_its_own_view_when_kept_and_ap_otherwise(tmp_path: Path) -> None:
    root = write_mimic(tmp_path, FILMS, STUDY_LABELS)
    kept, _ = mimic_table(root, patients_csv="../../patients.csv.gz", views=["PA", "AP", "AP_SUPINE"])
    merged, report = mimic_table(root, patients_csv="../../patients.csv.gz")
    ap = "/d3.jpg"
    assert kept.loc[kept.image_path.str.endswith(ap), "view"].item() == "AP_SUPINE"
    assert merged.loc[merged.image_path.str.endswith(ap), "view"].item() == "AP"
    assert report["dropped_views"] == 1  # the lateral film under the default views


@pytest.mark.parametrize(("policy", "label"), [("positive", 1), ("negative", 0)])
def test_uncertain_policy_decides_the_uncertain_study(tmp_path: Path, policy: str, label: int) -> None:
    frame, report = mimic_table(write_mimic(tmp_path, FILMS, STUDY_LABELS), uncertain=policy)
    assert frame.loc[frame.image_path.str.endswith("/d4.jpg"), "label"].tolist() == [label]
    assert report[f"uncertain_to_{policy}"] == 1 and report["uncertain_excluded"] == 0


def test_without_patients_csv_ages_and_sexes_are_unknown(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    frame, _ = mimic_table(write_mimic(tmp_path, FILMS, STUDY_LABELS))
    assert frame.age.isna().all() and frame.sex.isna().all()
    assert "ages and sexes of MIMIC-CXR are unknown" in caplog.text


def test_official_split_file_names_the_test_films(tmp_path: Path) -> None:
    split = {d[0]: "train" for d in FILMS} | {"d5": "test"}
    frame, _ = mimic_table(write_mimic(tmp_path, FILMS, STUDY_LABELS, split))
    assert frame.loc[frame.split == "test", "image_path"].str.endswith("/d5.jpg").all()
    assert set(frame.split) == {"trainval", "test"}


def test_missing_metadata_names_the_file_and_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no mimic-cxr-2.0.0-metadata.csv\(.gz\) in data.source.root="):
        mimic_table(tmp_path)


def test_tiny_pipeline_loads_patient_wise_splits_and_items(tmp_path: Path) -> None:
    films, labels = [], {}
    for patient in range(16):
        subject = 10000100 + patient
        for visit, finding in enumerate(({"No Finding": 1.0}, {"Edema": 1.0})):
            study = 50000100 + 2 * patient + visit
            films.append((f"d{subject}{visit}", subject, study, ("PA", "AP")[patient % 2], 21800101, "Erect", None))
            labels[study] = finding
    patients = [(10000100 + p, "MF"[p % 2], 40 + p, 2180) for p in range(16)]
    root = write_mimic(tmp_path, films, labels, patients=patients)
    samples, report, test = load_pipeline(
        "mimic", root, f"data.source.patients_csv={tmp_path / 'patients.csv.gz'}", "data.split.val_fraction=0.3"
    )
    assert set(samples.sex) == {"M", "F"} and samples.age.between(40, 55).all()
    assert samples.groupby("patient_id").split.nunique().max() == 1
    assert (samples.loc[samples.split == "train", "label"] == 0).all()
    assert report["missing_images"] == 0 and len(samples) + report["dropped_train_abnormal"] == 32
    item = test[0]
    assert item.image.shape == (3, 32, 32) and item.metadata.shape[0] == test.encoder.dim
