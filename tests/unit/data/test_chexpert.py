"""The CheXpert adapter on files written in the official train.csv/valid.csv format."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from cxrad.data.chexpert import chexpert_table
from cxrad.data.labels import CHEXPERT_FINDINGS
from tests.adapter_films import load_pipeline, write_film

COLUMNS = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", *CHEXPERT_FINDINGS]


def chexpert_row(patient: int, study: int, view: str, sex: str, age: int, **labels: float) -> dict:
    lateral = view == "LATERAL"
    name = f"view1_{'lateral' if lateral else 'frontal'}.jpg"
    return {
        "Path": f"CheXpert-v1.0-small/train/patient{patient:05d}/study{study}/{name}",
        "Sex": sex,
        "Age": age,
        "Frontal/Lateral": "Lateral" if lateral else "Frontal",
        "AP/PA": "" if lateral else view,
        **labels,
    }


def write_chexpert(tmp_path: Path, train: list[dict], valid: list[dict] = ()) -> Path:
    """``tmp_path/CheXpert-v1.0-small/{train,valid}.csv`` with their JPEGs at the rows' ``Path``."""
    root = tmp_path / "CheXpert-v1.0-small"
    for offset, (name, rows) in enumerate((("train.csv", train), ("valid.csv", valid))):
        frame = pd.DataFrame(list(rows), columns=COLUMNS)
        root.mkdir(parents=True, exist_ok=True)
        frame.to_csv(root / name, index=False)
        for seed, path in enumerate(frame["Path"]):
            write_film(tmp_path / path, seed=1000 * offset + seed)
    return root


HANDFUL = [
    chexpert_row(1, 1, "PA", "Male", 61, **{"No Finding": 1.0}),
    chexpert_row(1, 2, "AP", "Male", 62, **{"Pleural Effusion": 1.0, "Edema": 0.0}),
    chexpert_row(2, 1, "LATERAL", "Female", 35, **{"No Finding": 1.0}),
    chexpert_row(3, 1, "AP", "Unknown", 0, **{"Edema": -1.0}),  # uncertain only
    chexpert_row(4, 1, "PA", "Female", 48, **{"Cardiomegaly": 1.0, "Edema": -1.0}),
    chexpert_row(5, 1, "PA", "Female", 77, **{"Support Devices": 1.0, "No Finding": 1.0}),
]


def test_harmonised_table_ages_sexes_views_labels_and_patients(tmp_path: Path) -> None:
    frame, report = chexpert_table(write_chexpert(tmp_path, HANDFUL), views=["PA", "AP", "LATERAL"])
    by_patient = frame.set_index(frame.image_path.str.extract(r"(patient\d+/study\d)", expand=False))
    assert by_patient.loc["patient00001/study2", ["view", "label", "finding_labels"]].tolist() == [
        "AP",
        1,
        "Pleural Effusion",
    ]
    assert by_patient.loc["patient00002/study1", "view"] == "LATERAL"
    # Support Devices with No Finding is a normal film; the uncertain-only film is dropped under 'exclude'.
    assert by_patient.loc["patient00005/study1", "label"] == 0
    assert "patient00003/study1" not in by_patient.index
    assert report["uncertain_films"] == 2 and report["uncertain_excluded"] == 1
    # A definite finding beside an uncertain one keeps the film abnormal, listing only the definite finding.
    assert by_patient.loc["patient00004/study1", "finding_labels"] == "Cardiomegaly"
    assert sorted(frame.patient_id.unique()) == ["patient00001", "patient00002", "patient00004", "patient00005"]
    assert frame.sex.tolist() == ["Male", "Male", "Female", "Female", "Female"]  # raw: prepare_samples parses
    assert all(Path(p).is_file() for p in frame.image_path)


@pytest.mark.parametrize(
    ("policy", "label", "findings"),
    [("positive", 1, "Edema"), ("negative", 0, "No Finding")],
)
def test_uncertain_policy_decides_uncertain_only_film(tmp_path: Path, policy: str, label: int, findings: str) -> None:
    frame, report = chexpert_table(write_chexpert(tmp_path, HANDFUL), uncertain=policy)
    film = frame[frame.patient_id == "patient00003"]
    assert film[["label", "finding_labels"]].values.tolist() == [[label, findings]]
    assert film.age.isna().all()  # CheXpert's Age 0 is unknown
    assert report["uncertain_films"] == 2 and report["uncertain_excluded"] == 0
    assert report[f"uncertain_to_{policy}"] == 1


def test_bad_policy_and_view_name_the_choices(tmp_path: Path) -> None:
    root = write_chexpert(tmp_path, HANDFUL)
    with pytest.raises(ValueError, match=r"data.uncertain='maybe' is unknown; choose one of \['exclude'"):
        chexpert_table(root, uncertain="maybe")
    with pytest.raises(ValueError, match=r"data.source.views has \['LL'\]"):
        chexpert_table(root, views=["PA", "LL"])


def test_default_views_drop_lateral_films_and_count_them(tmp_path: Path) -> None:
    frame, report = chexpert_table(write_chexpert(tmp_path, HANDFUL))
    assert set(frame.view) == {"PA", "AP"} and report["dropped_views"] == 1


def test_official_split_sends_valid_films_to_test(tmp_path: Path) -> None:
    valid = [chexpert_row(9, 1, "PA", "Male", 50, **{"No Finding": 1.0})]
    valid[0]["Path"] = valid[0]["Path"].replace("/train/", "/valid/")
    frame, _ = chexpert_table(write_chexpert(tmp_path, HANDFUL, valid), use_official_split=True)
    assert frame.loc[frame.patient_id == "patient00009", "split"].tolist() == ["test"]
    assert set(frame.loc[frame.patient_id != "patient00009", "split"]) == {"trainval"}


def test_tiny_pipeline_loads_patient_wise_splits_and_items(tmp_path: Path) -> None:
    rows = []
    for patient in range(16):
        sex, age = ("Male", "Female")[patient % 2], 30 + 3 * patient
        rows.append(chexpert_row(patient, 1, ("PA", "AP")[patient % 2], sex, age, **{"No Finding": 1.0}))
        rows.append(chexpert_row(patient, 2, "PA", sex, age + 1, **{"Lung Opacity": 1.0}))
        rows.append(chexpert_row(patient, 3, "LATERAL", sex, age + 1, **{"Lung Opacity": 1.0}))
    samples, report, test = load_pipeline("chexpert", write_chexpert(tmp_path, rows), "data.split.val_fraction=0.3")
    assert set(samples.view) == {"PA", "AP"} and set(samples.sex) == {"M", "F"}
    assert samples.groupby("patient_id").split.nunique().max() == 1
    assert (samples.loc[samples.split == "train", "label"] == 0).all()
    assert report["dropped_views"] == 16 and report["missing_images"] == 0
    item = test[0]
    row = test.table.iloc[0]
    assert item.image.shape == (3, 32, 32) and int(item.gt_label) == row.label
    assert math.isclose(float(item.metadata[0]), (row.age - 50.0) / 20.0, rel_tol=1e-6)
