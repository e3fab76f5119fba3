"""Per-view thresholds on a dataset with three views (PA, AP, LATERAL), also through the threshold comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxrad.analysis.selection import threshold_comparison
from cxrad.metrics import compute_image_metrics
from cxrad.threshold import fit_threshold, per_group_threshold

SHIFTS = {"PA": 0.0, "AP": 1.0, "LATERAL": 3.0}  # normals of each view score this much higher


def normal_films(rng: np.random.Generator, n: int) -> pd.DataFrame:
    views = np.repeat(list(SHIFTS), n)
    scores = rng.normal(0.0, 1.0, views.size) + np.vectorize(SHIFTS.get)(views)
    return pd.DataFrame({"view": views, "score": scores, "age": 50.0, "sex": "F", "label": 0})


def test_each_of_three_views_gets_its_cut_and_its_nominal_fpr() -> None:
    rng = np.random.default_rng(0)
    val, test = normal_films(rng, 300), normal_films(rng, 300)
    test = pd.concat([test, test.assign(label=1, score=test.score + 4)], ignore_index=True)
    test["finding_labels"] = np.where(test.label == 1, "Mass", "No Finding")
    threshold = per_group_threshold(val["score"], val, q=90.0)
    assert list(threshold.group_values) == ["AP", "LATERAL", "PA"]
    assert threshold.group_values["LATERAL"] > threshold.group_values["AP"] > threshold.group_values["PA"]
    per_view = compute_image_metrics(test, threshold)["per_view"]
    shared = compute_image_metrics(test, fit_threshold("percentile", val["score"].to_numpy(), q=90.0))["per_view"]
    for view in SHIFTS:
        assert abs(per_view[view]["fpr_normals"] - 0.10) < 0.05, view
    # One shared cut flags lateral normals at twice the nominal rate or more, and almost no PA normal.
    assert shared["LATERAL"]["fpr_normals"] > 0.2 and shared["PA"]["fpr_normals"] < 0.02


def test_threshold_comparison_reports_the_lateral_normals(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    val, test = normal_films(rng, 200), normal_films(rng, 200)
    test = pd.concat([test, test.assign(label=1, score=test.score + 4)], ignore_index=True)
    test["finding_labels"] = np.where(test.label == 1, "Mass", "No Finding")
    val.to_csv(tmp_path / "val_scores.csv", index=False)
    test.to_csv(tmp_path / "predictions.csv", index=False)
    table = threshold_comparison(tmp_path, {"percentile": {"q": 90.0}, "per_group": {"q": 90.0}}).set_index("method")
    assert table.loc["percentile", "fpr_lateral_normals"] > 0.2
    assert abs(table.loc["per_group", "fpr_lateral_normals"] - 0.10) < 0.06
