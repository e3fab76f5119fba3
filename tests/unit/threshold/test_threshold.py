"""Threshold rules: hand-checked cuts, label blindness of the unsupervised rules, loud errors."""

import dataclasses
import inspect

import numpy as np
import pytest
from sklearn.metrics import f1_score

from cxrad.threshold import (
    METHODS,
    Threshold,
    f1_oracle_threshold,
    fit_threshold,
    gmm_threshold,
    otsu_threshold,
    percentile_threshold,
)
from cxrad.threshold.methods import _numpy_otsu


@pytest.fixture
def gaussian_scores() -> np.ndarray:
    return np.random.default_rng(0).normal(loc=5.0, scale=2.0, size=2000)


def test_percentile_on_arange_is_q() -> None:
    assert percentile_threshold(np.arange(101), q=95.0, conformal=False) == 95.0
    expected = Threshold(81.0, "percentile", False, {"q": 80.0, "conformal": 1.0})  # the ceil(102 * 0.8) = 82nd
    assert fit_threshold("percentile", np.arange(101), q=80.0) == expected


def test_percentile_rejects_q_outside_0_100() -> None:
    with pytest.raises(ValueError, match="q=150"):
        percentile_threshold(np.arange(10), q=150.0)


def test_otsu_cuts_between_two_modes() -> None:
    rng = np.random.default_rng(1)
    scores = np.r_[rng.normal(0.0, 1.0, 500), rng.normal(10.0, 1.0, 500)]
    cut = otsu_threshold(scores)
    assert 0.0 < cut < 10.0
    assert ((scores < cut) == (np.arange(1000) < 500)).all()  # the two modes land on either side


def test_numpy_otsu_matches_skimage() -> None:
    skimage_filters = pytest.importorskip("skimage.filters")
    scores = np.random.default_rng(2).gamma(2.0, 1.5, size=777)
    assert _numpy_otsu(scores) == pytest.approx(float(skimage_filters.threshold_otsu(scores)))


def test_otsu_on_constant_scores_returns_the_constant() -> None:
    assert otsu_threshold(np.full(5, 3.5)) == 3.5


def test_gmm_cut_sits_in_the_upper_tail_of_normal_scores(gaussian_scores: np.ndarray) -> None:
    cut = gmm_threshold(gaussian_scores)
    assert cut > np.percentile(gaussian_scores, 95)
    # the rule targets a 1% false-positive rate: the 99th percentile of N(5, 2) is 5 + 2 * 2.326
    assert cut == pytest.approx(5.0 + 2.0 * 2.326, abs=0.3)


def test_gmm_tail_sets_the_target_rate(gaussian_scores: np.ndarray) -> None:
    cut = gmm_threshold(gaussian_scores, n_components=1, tail=0.05)
    assert np.mean(gaussian_scores >= cut) == pytest.approx(0.05, abs=0.015)


def test_gmm_is_scale_equivariant(gaussian_scores: np.ndarray) -> None:
    assert gmm_threshold(1e-4 * gaussian_scores) == pytest.approx(1e-4 * gmm_threshold(gaussian_scores))


def test_gmm_never_sees_labels(gaussian_scores: np.ndarray) -> None:
    assert "labels" not in inspect.signature(gmm_threshold).parameters
    test_scores = np.array([0.0, 1.0, 2.0, 3.0])
    with_labels = fit_threshold("gmm", gaussian_scores, test_scores=test_scores, test_labels=np.array([0, 0, 1, 1]))
    flipped = fit_threshold("gmm", gaussian_scores, test_scores=test_scores, test_labels=np.array([1, 1, 0, 0]))
    assert with_labels == flipped == fit_threshold("gmm", gaussian_scores)
    assert not with_labels.is_oracle
    assert with_labels.params == {"n_components": 2.0, "seed": 0.0, "tail": 0.01}


def test_gmm_on_constant_scores_fails_loudly() -> None:
    with pytest.raises(ValueError, match="percentile"):
        gmm_threshold(np.ones(10))


def test_f1_oracle_on_separable_scores_reaches_f1_one() -> None:
    scores = np.array([0.1, 0.3, 0.2, 0.7, 0.9, 0.8])
    labels = np.array([0, 0, 0, 1, 1, 1])
    cut = f1_oracle_threshold(scores, labels)
    assert cut == 0.7  # the lowest cut that flags every anomaly and no normal
    assert f1_score(labels, scores >= cut) == 1.0


def test_fit_threshold_oracle_is_flagged_and_needs_labels() -> None:
    threshold = fit_threshold(
        "f1_oracle", np.arange(5.0), test_scores=np.array([1.0, 2.0]), test_labels=np.array([0, 1])
    )
    assert threshold.is_oracle and threshold.value == 2.0
    with pytest.raises(ValueError, match="test_labels"):
        fit_threshold("f1_oracle", np.arange(5.0), test_scores=np.array([1.0, 2.0]))


def test_f1_oracle_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both classes"):
        f1_oracle_threshold(np.array([1.0, 2.0]), np.array([1, 1]))


def test_bad_method_name_is_named_with_the_choices() -> None:
    with pytest.raises(ValueError, match="'youden'") as error:
        fit_threshold("youden", np.arange(5.0))
    assert all(method in str(error.value) for method in METHODS)


@pytest.mark.parametrize("method", ["otsu", "percentile", "gmm", "f1_oracle"])
def test_empty_validation_split_fails_with_the_fix(method: str) -> None:
    with pytest.raises(ValueError, match=r"validation split is empty; raise data.split.val_fraction \(e.g. 0.15\)"):
        fit_threshold(method, np.array([]), test_scores=np.ones(2), test_labels=np.array([0, 1]))


def test_nan_scores_fail_loudly() -> None:
    with pytest.raises(ValueError, match="NaN"):
        fit_threshold("percentile", np.array([1.0, np.nan, 2.0]))


def test_threshold_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit_threshold("otsu", np.arange(10.0)).value = 1.0  # type: ignore[misc]


def test_percentile_cut_from_a_small_calibration_set_hits_its_nominal_fpr() -> None:
    """44 normal calibration films, q95: the conformal order statistic flags at most 5% of new normal films on
    average (and not far less); numpy's interpolated percentile flags about 7%."""
    rng = np.random.default_rng(0)
    conformal, linear = [], []
    for _ in range(4000):
        calibration, test = rng.normal(size=44), rng.normal(size=500)
        conformal.append((test >= percentile_threshold(calibration, 95.0)).mean())
        linear.append((test >= percentile_threshold(calibration, 95.0, conformal=False)).mean())
    assert 0.040 < np.mean(conformal) <= 0.05 < 0.065 < np.mean(linear)
