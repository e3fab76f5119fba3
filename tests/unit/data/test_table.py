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


def test_normal_patients_sends_patients_with_a_finding_to_test_with_all_their_films() -> None:
    frame = _frame(["a", "a", "b", "c", "d"], [0, 1, 0, 0, 0])
    out = assign_patient_splits(complete_columns(frame, "t"), SplitConfig(0.0, 0.0, strategy="normal_patients"))
    assert out.loc[out.patient_id == "a", "split"].tolist() == ["test", "test"]
    assert set(out.loc[out.patient_id != "a", "split"]) == {"train"}


def test_normal_patients_honours_the_sources_patient_flag() -> None:
    frame = complete_columns(_frame(["a", "b", "c"], [0, 0, 0]), "t")
    frame["patient_has_finding"] = [True, False, False]  # a's abnormal film was filtered out by the source
    out = assign_patient_splits(frame, SplitConfig(0.0, 0.0, strategy="normal_patients"))
    assert out["split"].tolist() == ["test", "train", "train"]


def test_patient_random_draws_every_patient_by_the_fractions() -> None:
    patients = [f"p{i}" for i in range(100) for _ in range(2)]
    labels = [0, 1] * 50 + [0, 0] * 50  # half the patients have a finding on their second film
    out = assign_patient_splits(complete_columns(_frame(patients, labels), "t"), SplitConfig(0.2, 0.3, seed=1))
    per_patient = out.groupby("patient_id")["split"].agg(["nunique", "first"])
    assert (per_patient["nunique"] == 1).all()
    assert per_patient["first"].value_counts().to_dict() == {"train": 50, "test": 30, "val": 20}
    sick = out[out.label == 1].groupby("patient_id")["split"].first()
    assert set(sick) == {"train", "val", "test"}  # patients with a finding are not all sent to test


@pytest.mark.parametrize("strategy", ["patient_random", "normal_patients"])
def test_split_fractions_apply_to_healthy_patients(strategy: str) -> None:
    patients = [f"p{i}" for i in range(100)]
    config = SplitConfig(0.2, 0.3, seed=1, strategy=strategy)
    out = assign_patient_splits(complete_columns(_frame(patients, [0] * 100), "t"), config)
    assert out["split"].value_counts().to_dict() == {"train": 50, "test": 30, "val": 20}


def test_unknown_strategy_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"data.split.strategy=random is unknown; choose from \['patient_random'"):
        SplitConfig(strategy="random")


def test_enforce_rejects_a_patient_in_two_splits() -> None:
    frame = complete_columns(_frame(["a", "a"], [0, 0]), "t")
    frame["split"] = ["train", "test"]
    with pytest.raises(ValueError, match="more than one split"):
        enforce_split_rules(frame)


def test_enforce_drops_abnormal_films_from_train_only() -> None:
    frame = complete_columns(_frame(["a", "b", "c", "d"], [1, 0, 1, 1]), "t")
    frame["split"] = ["train", "train", "val", "test"]
    out = enforce_split_rules(frame)
    assert out["patient_id"].tolist() == ["b", "c", "d"]  # val keeps its abnormal film


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
