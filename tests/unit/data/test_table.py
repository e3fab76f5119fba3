import numpy as np
import pandas as pd
import pytest

from cxrad.data.table import (
    SplitConfig,
    assign_patient_splits,
    cap_split,
    check_splits,
    complete_columns,
    enforce_split_rules,
)


def _frame(patients: list[str], labels: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_path": [f"/x/{i}.png" for i in range(len(patients))],
            "label": labels,
            "age": 50.0,
            "sex": "M",
            "view": "PA",
            "patient_id": patients,
        }
    )


def test_patients_with_a_finding_go_to_test_with_all_their_films() -> None:
    frame = _frame(["a", "a", "b", "c", "d"], [0, 1, 0, 0, 0])
    out = assign_patient_splits(complete_columns(frame, "t"), SplitConfig(0.0, 0.0))
    assert out.loc[out.patient_id == "a", "split"].tolist() == ["test", "test"]
    assert set(out.loc[out.patient_id != "a", "split"]) == {"train"}


def test_split_fractions_apply_to_healthy_patients() -> None:
    patients = [f"p{i}" for i in range(100)]
    out = assign_patient_splits(complete_columns(_frame(patients, [0] * 100), "t"), SplitConfig(0.2, 0.3, seed=1))
    assert out["split"].value_counts().to_dict() == {"train": 50, "test": 30, "val": 20}


def test_enforce_rejects_a_patient_in_two_splits() -> None:
    frame = complete_columns(_frame(["a", "a"], [0, 0]), "t")
    frame["split"] = ["train", "test"]
    with pytest.raises(ValueError, match="more than one split"):
        enforce_split_rules(frame)


def test_enforce_drops_abnormal_films_outside_test() -> None:
    frame = complete_columns(_frame(["a", "b", "c"], [1, 0, 1]), "t")
    frame["split"] = ["train", "train", "test"]
    out = enforce_split_rules(frame)
    assert out["label"].tolist() == [0, 1]


def test_complete_columns_names_missing_columns() -> None:
    with pytest.raises(ValueError, match=r"lacks required column\(s\) \['view'\]"):
        complete_columns(pd.DataFrame({"image_path": [], "label": [], "age": [], "sex": []}), "my.csv")


def test_films_without_patient_id_are_their_own_patients() -> None:
    frame = _frame(["a", "b"], [0, 0]).drop(columns="patient_id")
    out = complete_columns(frame, "t")
    assert out["patient_id"].nunique() == 2


def test_check_splits_names_the_empty_split() -> None:
    frame = complete_columns(_frame(["a", "b", "c"], [0, 0, 1]), "t")
    frame["split"] = ["train", "test", "test"]
    with pytest.raises(ValueError, match="split 'val' has no films with label 0.*val_fraction"):
        check_splits(frame)


def test_cap_split_keeps_other_splits() -> None:
    frame = complete_columns(_frame([f"p{i}" for i in range(10)], [0] * 10), "t")
    frame["split"] = ["train"] * 8 + ["test"] * 2
    out = cap_split(frame, "train", 3, seed=0)
    assert (out.split == "train").sum() == 3 and (out.split == "test").sum() == 2
    assert np.array_equal(cap_split(frame, "train", 3, seed=0).image_path, out.image_path)
