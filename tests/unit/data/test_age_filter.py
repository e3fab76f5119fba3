"""data.min_age / data.max_age: films outside the range are dropped before the split and counted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrad.data.samples import filter_age, prepare_samples
from cxrad.data.table import SplitConfig

AGES = [2.0, 9.0, 17.5, 18.0, 35.0, 60.0, 90.0, np.nan]


def source_table(n_patients: int = 240, seed: int = 0) -> pd.DataFrame:
    """One film per patient, ages cycling through :data:`AGES`, a quarter abnormal."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "image_path": [f"/nowhere/{i}.png" for i in range(n_patients)],
            "patient_id": [str(i) for i in range(n_patients)],
            "label": (rng.random(n_patients) < 0.25).astype(int),
            "age": [AGES[i % len(AGES)] for i in range(n_patients)],
            "sex": rng.choice(["M", "F"], n_patients),
            "view": rng.choice(["PA", "AP"], n_patients),
        }
    )


def test_min_age_drops_exactly_the_films_below_it_and_those_of_unknown_age() -> None:
    frame = pd.DataFrame({"age": AGES})
    kept, report = filter_age(frame, min_age=18)
    assert kept["age"].tolist() == [18.0, 35.0, 60.0, 90.0]
    assert report == {"dropped_below_min_age": 3, "dropped_above_max_age": 0, "dropped_age_unknown": 1}


def test_max_age_and_no_bounds() -> None:
    frame = pd.DataFrame({"age": AGES})
    kept, report = filter_age(frame, max_age=60)
    assert kept["age"].tolist() == [2.0, 9.0, 17.5, 18.0, 35.0, 60.0]
    assert report["dropped_above_max_age"] == 1
    unchanged, empty = filter_age(frame)
    assert len(unchanged) == len(frame) and empty == {}


def test_prepare_samples_filters_before_splitting_and_reports_the_count() -> None:
    table = source_table()
    split = SplitConfig(val_fraction=0.2, test_fraction=0.3, seed=0)
    frame, report = prepare_samples((table, {}), split, age_range=(18.0, None))
    below = int((table["age"] < 18).sum())
    assert report["dropped_below_min_age"] == below and report["dropped_age_unknown"] == table["age"].isna().sum()
    assert (frame["age"] >= 18).all()
    assert report["n_train"] + report["n_val"] + report["n_test"] + report["dropped_train_abnormal"] == len(
        table
    ) - below - int(table["age"].isna().sum())


def test_inverted_range_fails_naming_both_bounds() -> None:
    with pytest.raises(ValueError, match=r"data.min_age=60 is above data.max_age=18; swap them"):
        filter_age(pd.DataFrame({"age": AGES}), min_age=60, max_age=18)
