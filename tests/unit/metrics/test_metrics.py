"""Image metrics on a six-row table whose every value is worked out by hand in the comments."""

import json

import numpy as np
import pandas as pd
import pytest

from cxrad.metrics import compute_image_metrics, fpr_at_tpr, roc_points, tpr_at_fpr
from cxrad.metrics.image import assign_age_band, check_predictions
from cxrad.threshold import Threshold

THRESHOLD = Threshold(value=0.5, method="percentile", is_oracle=False, params={"q": 95.0})


@pytest.fixture
def table() -> pd.DataFrame:
    """Normals score 0.1 (PA), 0.4 (PA), 0.6 (AP); anomalies 0.3 (PA), 0.7 (AP), 0.9 (AP)."""
    return pd.DataFrame(
        {
            "label": [0, 0, 0, 1, 1, 1],
            "score": [0.1, 0.4, 0.6, 0.3, 0.7, 0.9],
            "age": [30.0, 45.0, 70.0, 50.0, 65.0, np.nan],
            "sex": ["M", "F", "M", "F", "M", "F"],
            "view": ["PA", "PA", "AP", "PA", "AP", "AP"],
            "finding_labels": ["No Finding"] * 3 + ["Effusion", "Effusion|Nodule", "Nodule"],
        }
    )


@pytest.fixture
def metrics(table: pd.DataFrame) -> dict:
    return compute_image_metrics(table, THRESHOLD)


def test_overall_ranking_metrics(metrics: dict) -> None:
    # anomaly 0.3 beats 1 normal, 0.7 and 0.9 beat all 3: 7 of 9 pairs
    assert metrics["image_auroc"] == pytest.approx(7 / 9)
    # ranked 0.9+, 0.7+, 0.6, 0.4, 0.3+: precisions at the hits 1, 1, 3/5
    assert metrics["image_aupr"] == pytest.approx((1 + 1 + 3 / 5) / 3)
    assert (metrics["n_test"], metrics["n_test_normal"], metrics["n_test_abnormal"]) == (6, 3, 3)


def test_rates_at_the_threshold(metrics: dict) -> None:
    # score >= 0.5 flags normal 0.6 and anomalies 0.7, 0.9
    assert metrics["fpr"] == pytest.approx(1 / 3)
    assert metrics["tpr"] == pytest.approx(2 / 3)
    assert metrics["threshold"] == 0.5
    assert metrics["threshold_method"] == "percentile"
    assert metrics["threshold_is_oracle"] is False


def test_operating_points_on_the_toy_table(metrics: dict) -> None:
    # FPR 0 allows cut 0.7 (TPR 2/3); TPR 1 needs cut 0.3, which flags normals 0.4, 0.6
    assert metrics["tpr_at_fpr_0.05"] == pytest.approx(2 / 3)
    assert metrics["fpr_at_tpr_0.95"] == pytest.approx(2 / 3)


def test_operating_points_with_twenty_normals() -> None:
    labels = np.r_[np.zeros(20), np.ones(4)]
    scores = np.r_[np.arange(20.0), [18.5, 25.0, 30.0, 10.0]]
    # cut 18.5 flags normal 19 only (FPR 1/20 = 0.05) and anomalies 18.5, 25, 30
    assert tpr_at_fpr(labels, scores, 0.05) == 0.75
    # every anomaly needs cut 10, which flags normals 10..19
    assert fpr_at_tpr(labels, scores, 0.95) == 0.5
    fpr, tpr, cuts = roc_points(labels, scores)
    assert fpr[0] == tpr[0] == 0.0 and fpr[-1] == tpr[-1] == 1.0 and np.isinf(cuts[0])


def test_per_finding_counts_a_multi_label_row_in_both(metrics: dict) -> None:
    # Effusion: 0.3 and 0.7 against normals 0.1, 0.4, 0.6 win 1 + 3 of 6 pairs; Nodule: 0.7, 0.9 win all
    assert metrics["per_finding_auroc"] == {
        "Effusion": {"auroc": pytest.approx(4 / 6), "n_positive": 2},
        "Nodule": {"auroc": 1.0, "n_positive": 2},
    }


def test_view_subgroups_and_stratified_auroc(metrics: dict) -> None:
    pa, ap = metrics["subgroups"]["view"]["PA"], metrics["subgroups"]["view"]["AP"]
    assert pa["auroc"] == 0.5  # anomaly 0.3 beats normal 0.1 but not 0.4
    assert ap["auroc"] == 1.0
    assert (pa["fpr"], pa["tpr"], ap["fpr"], ap["tpr"]) == (0.0, 0.0, 1.0, 1.0)
    assert (pa["n"], pa["n_normal"], pa["n_abnormal"]) == (3, 2, 1)
    assert metrics["view_stratified_auroc"] == 0.75
    assert metrics["subgroups"]["view"]["unknown"]["n"] == 0


def test_sex_and_age_subgroups(metrics: dict) -> None:
    assert metrics["subgroups"]["sex"]["M"]["auroc"] == 1.0
    assert metrics["subgroups"]["sex"]["F"]["auroc"] == 0.5
    bands = metrics["subgroups"]["age_band"]
    assert list(bands) == ["<40", "40-60", ">=60", "unknown"]
    assert bands["40-60"]["auroc"] == 0.0  # anomaly 0.3 under normal 0.4
    assert bands[">=60"]["auroc"] == 1.0


def test_single_class_subgroup_has_no_auroc(metrics: dict) -> None:
    young, unknown_age = metrics["subgroups"]["age_band"]["<40"], metrics["subgroups"]["age_band"]["unknown"]
    assert young == {
        "auroc": None,
        "aupr": None,
        "fpr": 0.0,
        "tpr": None,
        "n": 1,
        "n_normal": 1,
        "n_abnormal": 0,
    }
    assert unknown_age["auroc"] is None and unknown_age["tpr"] == 1.0 and unknown_age["fpr"] is None


def test_view_shortcut_metrics(metrics: dict) -> None:
    assert metrics["normal_view_leakage_auroc"] == 1.0  # AP normal 0.6 above PA normals 0.1, 0.4
    # view alone scores anomalies (PA, AP, AP) as (0, 1, 1) and normals (PA, PA, AP) as (0, 0, 1):
    # pairs won 1 + 2.5 + 2.5 (ties count 1/2) of 9
    assert metrics["view_only_auroc"] == pytest.approx(6 / 9)
    assert (metrics["fpr_ap_normals"], metrics["fpr_pa_normals"], metrics["fpr_gap_ap_minus_pa"]) == (
        1.0,
        0.0,
        1.0,
    )


def test_leakage_is_half_when_views_score_alike(table: pd.DataFrame) -> None:
    normals = pd.concat([table.iloc[:3]] * 2, ignore_index=True)
    normals["score"] = [0.1, 0.2, 0.3] * 2
    normals["view"] = ["PA"] * 3 + ["AP"] * 3
    both = pd.concat([normals, table.iloc[3:]], ignore_index=True)
    assert compute_image_metrics(both, THRESHOLD)["normal_view_leakage_auroc"] == 0.5


def test_result_is_json_ready(table: pd.DataFrame) -> None:
    table.loc[:, "score"] = np.float32(table["score"])
    text = json.dumps(compute_image_metrics(table, THRESHOLD), allow_nan=False)
    assert json.loads(text)["subgroups"]["sex"]["unknown"]["auroc"] is None


def test_one_class_test_set_gives_none_not_an_error(table: pd.DataFrame) -> None:
    metrics = compute_image_metrics(table.iloc[:3], THRESHOLD)
    assert metrics["image_auroc"] is None and metrics["tpr_at_fpr_0.05"] is None
    assert metrics["view_stratified_auroc"] is None and metrics["per_finding_auroc"] == {}


def test_age_band_edges_belong_to_the_upper_band() -> None:
    bands = assign_age_band(np.array([39.9, 40.0, 59.9, 60.0, np.nan]), (40.0, 60.0))
    assert bands.tolist() == ["<40", "40-60", "40-60", ">=60", "unknown"]
    with pytest.raises(ValueError, match="strictly increasing"):
        assign_age_band(np.array([50.0]), (60.0, 40.0))


def test_bad_tables_are_rejected_with_the_cause(table: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="finding_labels"):
        check_predictions(table.drop(columns="finding_labels"))
    with pytest.raises(ValueError, match="'LL'"):
        check_predictions(table.assign(view=["LL"] + ["PA"] * 5))
    with pytest.raises(ValueError, match=r"\[2\]"):
        check_predictions(table.assign(label=[0, 0, 0, 1, 1, 2]))


def test_shortcuts_are_two_sided() -> None:
    """Over-correction (AP normals scoring *below* PA normals) is a shortcut too: |leakage - 0.5| sees it."""
    rng = np.random.default_rng(0)
    n = 200
    view = np.where(np.arange(n) % 2 == 0, "AP", "PA")
    sex = np.where(np.arange(n) % 4 < 2, "F", "M")
    frame = pd.DataFrame(
        {"label": 0, "age": np.where(np.arange(n) % 3 == 0, 70.0, 30.0), "sex": sex, "view": view,
         "finding_labels": "No Finding", "score": rng.normal(size=n) - 2.0 * (view == "AP")}
    )  # fmt: skip
    frame.loc[:9, ["label", "finding_labels"]] = [1, "Nodule"]
    result = compute_image_metrics(frame, Threshold(0.0, "percentile", False))
    assert result["normal_view_leakage_auroc"] < 0.2
    assert result["view_shortcut"] == pytest.approx(0.5 - result["normal_view_leakage_auroc"])
    assert result["view_shortcut"] > 0.3  # a one-sided "leakage below 0.5 is good" reading would call this a success
    assert result["sex_shortcut"] < 0.15 and result["age_shortcut"] < 0.15  # sex and age carry nothing here
    older = frame.assign(score=frame["score"] + 3.0 * (frame["age"] > 60))
    assert compute_image_metrics(older, Threshold(0.0, "percentile", False))["age_shortcut"] > 0.3
