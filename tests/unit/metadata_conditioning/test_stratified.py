import numpy as np
import pandas as pd

from cxrad.metadata_conditioning import GroupCalibration, calibrate_scores


def _frame(views: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"view": views, "sex": "M", "age": 50.0, "label": 0})


def test_groups_get_the_same_scale_and_ranking_inside_a_group_is_kept() -> None:
    rng = np.random.default_rng(0)
    views = ["PA"] * 40 + ["AP"] * 40
    scores = pd.Series(np.r_[rng.normal(10, 1, 40), rng.normal(20, 3, 40)])
    frame = _frame(views)
    calibrated = GroupCalibration(min_group_size=10).fit(scores, frame).transform(scores, frame)
    pa, ap = calibrated[:40], calibrated[40:]
    assert abs(pa.median() - ap.median()) < 0.05
    assert (np.argsort(scores[40:].to_numpy()) == np.argsort(ap.to_numpy())).all()


def test_small_groups_fall_back_to_coarser_groups() -> None:
    frame = pd.DataFrame({"view": ["PA"] * 12 + ["AP"] * 12, "sex": ["M", "F"] * 12, "age": 50.0})
    scores = pd.Series(np.r_[np.arange(12.0), np.arange(12.0) + 100])
    calibration = GroupCalibration(min_group_size=10).fit(scores, frame)
    assert (0, "AP|M|40-60") not in calibration.stats  # 6 films: too few
    assert (2, "AP") in calibration.stats
    out = calibration.transform(scores, frame)
    assert abs(out[:12].median() - out[12:].median()) < 1e-9


def test_options_other_than_stratified_pass_scores_through() -> None:
    frame = _frame(["PA", "AP"])
    scores = pd.Series([1.0, 2.0])
    val, test = calibrate_scores({"name": "none"}, scores, scores, frame)
    assert val is scores and test is scores


def test_stratified_threshold_on_calibration_films_hits_its_nominal_fpr() -> None:
    """The per-group calibration is fitted on the reference films only; the calibration films that set the cut are
    scored by it exactly as the test films are, so the test FPR sits at the nominal 5%."""
    rng = np.random.default_rng(3)
    n_ref, n_cal, n_test = 40, 400, 4000
    n = n_ref + n_cal + n_test
    frame = _frame(list(np.where(rng.uniform(size=n) < 0.35, "AP", "PA")))
    frame["split"] = ["val"] * (n_ref + n_cal) + ["test"] * n_test
    frame["val_role"] = ["reference"] * n_ref + ["calibration"] * n_cal + [""] * n_test
    raw = pd.Series(rng.normal(0, 1, n) + 3.0 * (frame["view"] == "AP").to_numpy())
    val, test = raw.iloc[: n_ref + n_cal], raw.iloc[n_ref + n_cal :]
    val_scores, test_scores = calibrate_scores({"name": "stratified", "min_group_size": 10}, val, test, frame)
    assert val_scores.index.tolist() == list(range(n_ref, n_ref + n_cal))  # reference films are not scored
    assert abs(float((test_scores >= np.percentile(val_scores, 95)).mean()) - 0.05) < 0.02
