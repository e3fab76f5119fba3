import numpy as np
import pandas as pd
import pytest

from cxrad.metrics import compute_image_metrics
from cxrad.threshold import per_group_threshold
from cxrad.threshold.methods import percentile_threshold


def test_each_view_gets_its_own_percentile_and_small_groups_fall_back() -> None:
    frame = pd.DataFrame({"view": ["PA"] * 20 + ["AP"] * 20 + ["unknown"] * 3, "age": 50.0})
    scores = pd.Series(np.r_[np.arange(20.0), np.arange(20.0) + 100, [500.0, 500.0, 500.0]])
    threshold = per_group_threshold(scores, frame, q=50.0, min_group_size=10)
    assert threshold.group_values == {"AP": 110.0, "PA": 10.0}  # the ceil(21 * 0.5) = 11th of each view's 20
    assert threshold.value == pytest.approx(percentile_threshold(scores.to_numpy(), 50.0))
    cuts = threshold.cuts(pd.DataFrame({"view": ["AP", "PA", "unknown"], "age": 50.0}))
    assert cuts.tolist() == [110.0, 10.0, threshold.value]


def test_per_group_cut_equalises_false_positive_rates() -> None:
    rng = np.random.default_rng(0)
    views = np.array(["PA"] * 200 + ["AP"] * 200)
    normal_scores = np.r_[rng.normal(0, 1, 200), rng.normal(3, 1, 200)]  # AP normals score higher
    val = pd.DataFrame({"view": views, "age": 50.0})
    threshold = per_group_threshold(pd.Series(normal_scores), val, q=90.0)
    test = pd.DataFrame(
        {
            "label": 0,
            "score": np.r_[rng.normal(0, 1, 200), rng.normal(3, 1, 200)],
            "view": views,
            "age": 50.0,
            "sex": "M",
            "finding_labels": "No Finding",
        }
    )
    test = pd.concat([test, test.assign(label=1, score=test.score + 5, finding_labels="Mass")], ignore_index=True)
    metrics = compute_image_metrics(test, threshold)
    assert abs(metrics["fpr_ap_normals"] - metrics["fpr_pa_normals"]) < 0.06
    assert metrics["threshold_groups"]["by"] == ["view"]
