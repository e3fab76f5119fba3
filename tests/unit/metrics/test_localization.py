"""Pointing game, box hits and pixel AUROC on small hand-made maps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cxrad.metrics.localization import (
    LocalizationStats,
    box_peaks,
    compute_localization_metrics,
    lesion_truth,
    map_threshold_by_fpr,
    pointing_hit,
    sample_pixels,
)
from cxrad.threshold import Threshold


def _film(peak_at: tuple[int, int], lesions: list[tuple[int, int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """An 8x8 map rising to 9 at ``peak_at`` and a mask of (y0, y1, x0, x1) lesions."""
    anomaly_map = np.zeros((8, 8), dtype=np.float32)
    anomaly_map[peak_at] = 9.0
    mask = np.zeros((8, 8), dtype=bool)
    for y0, y1, x0, x1 in lesions:
        mask[y0:y1, x0:x1] = True
    return anomaly_map, mask


def test_pointing_game_hit_and_miss() -> None:
    amap, mask = _film((2, 2), [(1, 4, 1, 4)])
    assert pointing_hit(amap, mask)
    amap, mask = _film((6, 6), [(1, 4, 1, 4)])
    assert not pointing_hit(amap, mask)


def test_box_peaks_one_per_connected_lesion() -> None:
    amap, mask = _film((2, 2), [(1, 4, 1, 4), (6, 8, 6, 8)])
    amap[7, 7] = 4.0
    assert box_peaks(amap, mask).tolist() == [9.0, 4.0]


def test_lesion_truth_lists_abnormal_films_with_masks_or_boxes() -> None:
    table = pd.DataFrame(
        {"label": [1, 1, 1, 0], "mask_path": ["m.png", "", "", ""], "boxes": ["", "Nodule:1,1,2,2", "", ""]},
        index=[10, 11, 12, 13],
    )
    assert lesion_truth(table) == {10: "mask", 11: "boxes"}


def test_pixel_sample_weights_recover_the_pooled_auroc() -> None:
    rng = np.random.default_rng(0)
    amap = rng.random((32, 32)).astype(np.float32)
    mask = np.zeros((32, 32), dtype=bool)
    mask[4:12, 4:20] = True  # 128 lesion pixels vs 896 others
    amap[mask] += 0.3
    exact = roc_auc_score(mask.ravel(), amap.ravel())
    values, labels, weights = sample_pixels(amap, mask, cap=2000, rng=rng)  # cap above both: every pixel
    assert roc_auc_score(labels, values, sample_weight=weights) == pytest.approx(exact)
    values, labels, weights = sample_pixels(amap, mask, cap=100, rng=np.random.default_rng(1))
    assert values.size == 200 and weights[labels == 0][0] == pytest.approx(896 / 100)
    assert roc_auc_score(labels, values, sample_weight=weights) == pytest.approx(exact, abs=0.06)


def test_map_threshold_matches_the_validation_flag_rate() -> None:
    # 2 of 10 normals flagged -> the 0.8 quantile of 1..10 (linear): 8.2
    flagged = np.r_[np.zeros(8), np.ones(2)].astype(bool)
    assert map_threshold_by_fpr(np.arange(1.0, 11.0), flagged) == pytest.approx(8.2)


def _stats() -> LocalizationStats:
    """Film 0: peak 9 inside its lesion; film 1: lesion peak 4, map peak 9 elsewhere; both with masks."""
    stats = LocalizationStats(pixel_cap=1000)
    amap, mask = _film((2, 2), [(1, 4, 1, 4)])
    stats.add(0, amap, mask, with_pixels=True)
    amap, mask = _film((7, 0), [(5, 7, 5, 7)])
    amap[5, 5] = 4.0
    stats.add(1, amap, mask, with_pixels=True)
    stats.add(2, amap, np.zeros((8, 8), bool), with_pixels=True)  # lesion cropped away: skipped
    return stats


def test_localization_when_scores_are_map_maxima() -> None:
    predictions = pd.DataFrame({"score": [9.0, 9.0], "pred_label": [1, 1]}, index=[0, 1])
    threshold = Threshold(5.0, "percentile", False, {"q": 95.0})
    val = pd.DataFrame({"map_max": [1.0, 2.0], "pred_label": [0, 0]})
    metrics = compute_localization_metrics(_stats(), pd.Series([9.0, 9.0], index=[0, 1]), predictions, val, threshold)
    assert metrics["pointing_game"] == {"rate": 0.5, "n_films": 2}
    # the cut is the image threshold 5: film 0's box (peak 9) is hit, film 1's (peak 4) is not
    hits = metrics["box_hit_rate"]
    assert hits["rate"] == 0.5 and hits["n_boxes"] == 2 and hits["map_threshold"] == 5.0
    assert hits["map_threshold_rule"].startswith("image threshold")
    assert metrics["pixel_auroc"]["n_films"] == 2 and 0.5 < metrics["pixel_auroc"]["auroc"] <= 1.0


def test_localization_with_other_score_units_uses_the_validation_fpr() -> None:
    # calibrated scores differ from the map maxima: the map cut comes from the validation maps
    predictions = pd.DataFrame({"score": [2.5, 1.0], "pred_label": [1, 0]}, index=[0, 1])
    threshold = Threshold(2.0, "percentile", False, {"q": 95.0})
    val = pd.DataFrame({"map_max": [1.0, 2.0, 3.0, 4.0, 5.0], "pred_label": [0, 0, 0, 0, 1]})
    metrics = compute_localization_metrics(_stats(), pd.Series([9.0, 9.0], index=[0, 1]), predictions, val, threshold)
    hits = metrics["box_hit_rate"]
    assert hits["map_threshold"] == pytest.approx(4.2)  # 0.8 quantile of 1..5
    assert hits["rate"] == 0.5  # film 0 flagged with peak 9 >= 4.2; film 1 not flagged
