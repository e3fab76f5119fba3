"""Patient bootstrap: the weighted AUROC against sklearn on duplicated rows, point estimates against the existing
metric functions, cluster behaviour, interval properties and the paired comparison."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cxrad.metrics import bootstrap
from cxrad.metrics.bootstrap import (
    METRICS,
    WeightedMetrics,
    bootstrap_metrics,
    format_difference,
    paired_difference,
    patient_codes,
    percentile_interval,
    weighted_auroc,
)
from cxrad.metrics.curves import auroc, rates_at_threshold
from cxrad.metrics.image import view_shortcut_metrics
from cxrad.metrics.nodules import compute_nodule_metrics


@pytest.fixture
def table() -> pd.DataFrame:
    """Normals 0.1 (PA), 0.4 (PA), 0.6 (AP), 0.2 (AP); anomalies 0.3 (PA), 0.7 (AP, nodule), 0.9 (AP, nodule),
    0.4 (PA, nodule; tied with a normal). Patients: p1 has three films, p2 two, the rest one (one unnamed)."""
    return pd.DataFrame(
        {
            "image_path": [f"f{i}.png" for i in range(8)],
            "patient_id": ["p1", "p1", "p2", "p3", "p1", "p2", "p4", None],
            "label": [0, 0, 0, 0, 1, 1, 1, 1],
            "score": [0.1, 0.4, 0.6, 0.2, 0.3, 0.7, 0.9, 0.4],
            "view": ["PA", "PA", "AP", "AP", "PA", "AP", "AP", "PA"],
            "sex": ["M", "F", "M", "F", "M", "F", "M", "F"],
            "age": [30.0, 45.0, 70.0, 50.0, 65.0, np.nan, 40.0, 55.0],
            "finding_labels": ["No Finding"] * 4 + ["Effusion", "Effusion|Nodule", "Nodule", "Mass|Nodule"],
        }
    )


def random_run(n_patients: int, films_per_patient: int = 1, seed: int = 0, shift: float = 1.0) -> pd.DataFrame:
    """A run with overlapping classes: abnormal scores ~ N(shift, 1), normal ~ N(0, 1); views and nodules mixed."""
    rng = np.random.default_rng(seed)
    n = n_patients * films_per_patient
    labels = rng.integers(0, 2, n)
    return pd.DataFrame(
        {
            "image_path": [f"img{i}" for i in range(n)],
            "patient_id": np.repeat([f"p{i}" for i in range(n_patients)], films_per_patient),
            "label": labels,
            "score": rng.normal(size=n) + shift * labels,
            "view": rng.choice(["PA", "AP"], n),
            "finding_labels": np.where(labels == 1, rng.choice(["Nodule", "Effusion"], n), "No Finding"),
        }
    )


@pytest.mark.parametrize("case", range(6))
def test_weighted_auroc_equals_sklearn_on_rows_repeated_by_the_weights(case: int) -> None:
    rng = np.random.default_rng(case)
    n = 40
    labels = np.r_[0, 1, rng.integers(0, 2, n - 2)]
    scores = rng.integers(0, 6, n) / 5.0  # few distinct values: many ties
    weights = rng.integers(0, 4, (5, n))
    weights[:, :2] = 1  # both classes in every replicate
    got = weighted_auroc(labels, scores, weights)
    for row, value in zip(weights, got, strict=True):
        expected = roc_auc_score(np.repeat(labels, row), np.repeat(scores, row))
        assert value == pytest.approx(expected, abs=1e-12)


def test_weighted_auroc_unit_weights_reproduce_auroc() -> None:
    rng = np.random.default_rng(7)
    labels, scores = rng.integers(0, 2, 300), np.round(rng.normal(size=300), 1)
    assert float(weighted_auroc(labels, scores, np.ones(300))) == pytest.approx(auroc(labels, scores), abs=1e-12)


def test_weighted_auroc_ties_count_one_half_and_missing_class_is_nan() -> None:
    labels, scores = np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.1, 0.9])
    # pairs (pos, neg): (0.5, 0.5) tie 1/2, (0.5, 0.1) 1, (0.9, 0.5) 1, (0.9, 0.1) 1 -> 3.5 / 4
    assert float(weighted_auroc(labels, scores, np.ones(4))) == pytest.approx(3.5 / 4)
    result = weighted_auroc(labels, scores, np.array([[1.0, 0, 1, 0], [0, 2, 0, 1]]))
    assert np.isnan(result).all()


def test_patient_codes_give_unnamed_films_their_own_patient(table: pd.DataFrame) -> None:
    codes = patient_codes(table)
    assert codes.tolist() == [0, 0, 1, 2, 0, 1, 3, 4]
    assert patient_codes(table.drop(columns="patient_id")).tolist() == list(range(8))


def test_point_estimates_equal_the_existing_metric_functions(table: pd.DataFrame) -> None:
    cuts = np.full(len(table), 0.35)
    result = bootstrap_metrics(table, cuts, n_boot=50)
    view = view_shortcut_metrics(table, cuts)
    labels, scores = table["label"].to_numpy(), table["score"].to_numpy()
    fpr, tpr = rates_at_threshold(labels, scores, cuts)
    # abnormal 0.3 beats 0.1, 0.2; 0.7 and 0.9 beat all four; 0.4 beats 0.1, 0.2, ties 0.4 -> (2 + 8 + 2.5) / 16
    assert result["image_auroc"]["estimate"] == pytest.approx(12.5 / 16) == auroc(labels, scores)
    for name in ("view_stratified_auroc", "normal_view_leakage_auroc", "view_shortcut"):
        assert result[name]["estimate"] == view[name]
    assert (result["fpr"]["estimate"], result["tpr"]["estimate"]) == (fpr, tpr) == (0.5, 0.75)
    assert result["nodule_auroc"]["estimate"] == compute_nodule_metrics(table)["nodule_auroc"]["auroc"]
    assert result["_bootstrap"] == {"n_boot": 50, "seed": 0, "confidence": 0.95, "unit": "patient", "n_patients": 5}


def test_unit_weights_reproduce_every_point_estimate(table: pd.DataFrame) -> None:
    cuts = np.full(len(table), 0.35)
    estimates = bootstrap_metrics(table, cuts, n_boot=1)
    unit = WeightedMetrics(table, cuts)(np.ones((1, len(table))))
    for name in METRICS:
        assert unit[name][0] == pytest.approx(estimates[name]["estimate"], abs=1e-12)


def test_result_is_json_safe_python_floats_and_none_where_undefined(table: pd.DataFrame) -> None:
    pa_only = table[table["view"] == "PA"]
    result = bootstrap_metrics(pa_only, 0.35, n_boot=20)
    for name in ("view_stratified_auroc", "normal_view_leakage_auroc", "view_shortcut"):
        assert result[name] == {"estimate": None, "low": None, "high": None, "n_valid": 0}
    assert type(result["image_auroc"]["estimate"]) is float
    assert type(result["image_auroc"]["low"]) is float
    json.dumps(result, allow_nan=False)


def test_interval_contains_the_estimate_and_narrows_with_more_patients() -> None:
    widths = []
    for n_patients in (40, 1000):
        result = bootstrap_metrics(random_run(n_patients), 0.5, n_boot=300)
        for name in ("image_auroc", "fpr", "tpr", "nodule_auroc"):
            entry = result[name]
            assert entry["low"] <= entry["estimate"] <= entry["high"]
        widths.append(result["image_auroc"]["high"] - result["image_auroc"]["low"])
    assert widths[1] < widths[0] / 2


def test_films_of_one_patient_move_together() -> None:
    # 40 normal films of 40 patients; 40 abnormal films from 2 patients: one scores high, the other among normals
    rng = np.random.default_rng(3)
    normal = rng.uniform(0.0, 1.0, 40)
    abnormal = np.r_[rng.uniform(0.9, 1.5, 20), rng.uniform(0.0, 1.0, 20)]
    clustered = pd.DataFrame(
        {
            "patient_id": [f"n{i}" for i in range(40)] + ["a1"] * 20 + ["a2"] * 20,
            "label": [0] * 40 + [1] * 40,
            "score": np.r_[normal, abnormal],
            "view": "PA",
            "finding_labels": ["No Finding"] * 40 + ["Effusion"] * 40,
        }
    )
    one_each = clustered.drop(columns="patient_id")
    wide = bootstrap_metrics(clustered, 0.5, n_boot=400)["image_auroc"]
    narrow = bootstrap_metrics(one_each, 0.5, n_boot=400)["image_auroc"]
    assert wide["estimate"] == narrow["estimate"]
    assert wide["high"] - wide["low"] > 2 * (narrow["high"] - narrow["low"])
    assert wide["n_valid"] < 400  # some resamples draw neither abnormal patient


def test_perfectly_separable_gives_an_interval_of_one() -> None:
    run = random_run(100, films_per_patient=2, shift=0.0)
    run["score"] = run["label"] + np.random.default_rng(1).uniform(0.0, 0.9, len(run))
    result = bootstrap_metrics(run, 0.95, n_boot=200)
    for name in ("image_auroc", "view_stratified_auroc", "nodule_auroc"):
        assert (result[name]["estimate"], result[name]["low"], result[name]["high"]) == (1.0, 1.0, 1.0)
    assert (result["fpr"]["low"], result["fpr"]["high"]) == (0.0, 0.0)


def test_same_seed_same_interval_and_global_rng_untouched() -> None:
    run = random_run(80, films_per_patient=2)
    np.random.seed(12345)
    state = np.random.get_state()
    first = bootstrap_metrics(run, 0.5, n_boot=100, seed=5)
    second = bootstrap_metrics(run, 0.5, n_boot=100, seed=5)
    other = bootstrap_metrics(run, 0.5, n_boot=100, seed=6)
    after = np.random.get_state()
    assert first == second
    assert first["image_auroc"]["low"] != other["image_auroc"]["low"]
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]


def test_replicates_do_not_depend_on_the_block_size(monkeypatch: pytest.MonkeyPatch) -> None:
    run = random_run(60, films_per_patient=3)
    whole = bootstrap_metrics(run, 0.5, n_boot=50, seed=2)
    monkeypatch.setattr(bootstrap, "_CHUNK_ELEMENTS", 7 * len(run))  # blocks of 7 replicates
    assert bootstrap_metrics(run, 0.5, n_boot=50, seed=2) == whole


def test_percentile_interval_skips_nan_replicates() -> None:
    replicates = np.r_[np.linspace(0.0, 1.0, 41), np.full(9, np.nan)]
    assert percentile_interval(replicates, 0.95) == {"low": 0.025, "high": pytest.approx(0.975), "n_valid": 41}
    assert percentile_interval(np.full(3, np.nan)) == {"low": None, "high": None, "n_valid": 0}


@pytest.mark.parametrize("metric", ["image_auroc", "view_stratified_auroc", "view_shortcut", "nodule_auroc"])
def test_paired_difference_of_a_run_with_itself_is_zero(metric: str) -> None:
    run = random_run(100, films_per_patient=2)
    result = paired_difference(run, run.sample(frac=1.0, random_state=0), metric, n_boot=200)
    assert (result["difference"], result["low"], result["high"]) == (0.0, 0.0, 0.0)
    assert result["a"] == result["b"] == bootstrap_metrics(run, 0.5, n_boot=1)[metric]["estimate"]
    assert (result["n_films"], result["n_patients"], result["n_valid"]) == (200, 100, 200)


def test_raising_abnormal_scores_gives_a_positive_difference_excluding_zero() -> None:
    base = random_run(150, films_per_patient=2)
    better = base.assign(score=base["score"] + 0.5 * base["label"])
    result = paired_difference(better, base, "image_auroc", n_boot=300, seed=1)
    assert result["difference"] == pytest.approx(result["a"] - result["b"])
    assert 0.0 < result["low"] <= result["difference"] <= result["high"]
    text = format_difference(result)
    assert text.startswith("image_auroc a - b: ") and f"{result['difference']:.3f} [" in text


def test_paired_rates_use_each_runs_cuts() -> None:
    run = random_run(50)
    result = paired_difference(run, run, "fpr", n_boot=50, cuts_a=0.0, cuts_b=np.full(len(run), 0.5))
    labels, scores = run["label"].to_numpy(), run["score"].to_numpy()
    assert result["a"] == rates_at_threshold(labels, scores, 0.0)[0]
    assert result["difference"] > 0 and result["low"] >= 0
    with pytest.raises(ValueError, match="need cuts_a and cuts_b"):
        paired_difference(run, run, "tpr", n_boot=10)


def test_paired_difference_rejects_mismatched_runs() -> None:
    run = random_run(40)
    with pytest.raises(ValueError, match=r"only 15 films in common .* run a \(40\) and b \(15\)"):
        paired_difference(run, run.iloc[:15], "image_auroc", n_boot=10)
    flipped = run.assign(label=1 - run["label"])
    with pytest.raises(ValueError, match="40 of 40 common films have different labels"):
        paired_difference(run, flipped, "image_auroc", n_boot=10)
    with pytest.raises(ValueError, match="must be one of"):
        paired_difference(run, run, "aupr", n_boot=10)


def test_format_difference_writes_missing_values_as_na() -> None:
    result = {"metric": "nodule_auroc", "difference": None, "low": None, "high": None}
    assert format_difference(result) == "nodule_auroc a - b: n/a [n/a, n/a]"
