"""The shortcut audit on a dataset with three views (PA, AP, LATERAL): every view is audited, not only PA/AP."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrad.metrics.bootstrap import WeightedMetrics, bootstrap_metrics, point_estimates
from cxrad.metrics.curves import auroc
from cxrad.metrics.image import compute_image_metrics, view_shortcut_metrics
from cxrad.threshold import Threshold

VIEWS = ("PA", "AP", "LATERAL")


def three_view_predictions(n_per_group: int = 60, lateral_shift: float = 1.5, seed: int = 0) -> pd.DataFrame:
    """Normals ~ N(0, 1) and abnormals ~ N(1, 1) in every view; lateral films score ``lateral_shift`` higher."""
    rng = np.random.default_rng(seed)
    rows = []
    for view in VIEWS:
        shift = lateral_shift if view == "LATERAL" else 0.0
        for label in (0, 1):
            scores = rng.normal(label + shift, 1.0, n_per_group)
            rows += [(label, s, view) for s in scores]
    frame = pd.DataFrame(rows, columns=["label", "score", "view"])
    frame["age"] = 50.0
    frame["sex"] = np.where(np.arange(len(frame)) % 2, "M", "F")
    frame["finding_labels"] = np.where(frame["label"] == 1, "Effusion", "No Finding")
    frame["patient_id"] = [f"p{i}" for i in range(len(frame))]
    return frame


def test_every_view_is_audited_and_the_lateral_shortcut_is_found() -> None:
    frame = three_view_predictions()
    audit = view_shortcut_metrics(frame, 0.5)
    assert set(audit["per_view"]) == set(VIEWS)
    normal = frame.label == 0
    lateral_leak = auroc(
        (frame.loc[normal, "view"] == "LATERAL").astype(int).to_numpy(), frame.loc[normal, "score"].to_numpy()
    )
    assert audit["per_view"]["LATERAL"]["normal_leakage_auroc"] == pytest.approx(lateral_leak)
    assert lateral_leak > 0.75  # lateral normals score higher than the other views' normals
    # The shortcut is the lateral one, far above what AP against PA alone shows.
    assert audit["view_shortcut"] == pytest.approx(lateral_leak - 0.5)
    assert audit["view_shortcut"] > abs(audit["normal_view_leakage_auroc"] - 0.5) + 0.2
    within = [auroc(g.label.to_numpy(), g.score.to_numpy()) for _, g in frame.groupby("view")]
    assert audit["view_stratified_auroc"] == pytest.approx(np.mean(within))
    assert audit["per_view"]["LATERAL"]["fpr_normals"] > audit["per_view"]["PA"]["fpr_normals"]


def test_without_a_view_shift_the_audit_finds_no_shortcut() -> None:
    audit = view_shortcut_metrics(three_view_predictions(n_per_group=400, lateral_shift=0.0), 0.5)
    assert audit["view_shortcut"] < 0.06


def test_image_metrics_report_the_extra_view_as_a_subgroup() -> None:
    metrics = compute_image_metrics(three_view_predictions(), Threshold(0.5, "percentile", False))
    assert set(metrics["subgroups"]["view"]) == {"PA", "AP", "unknown", "LATERAL"}
    assert metrics["subgroups"]["view"]["LATERAL"]["n"] == 120


def test_bootstrap_replicates_measure_the_same_three_view_quantities() -> None:
    frame = three_view_predictions(n_per_group=30)
    cuts = np.full(len(frame), 0.5)
    unweighted = WeightedMetrics(frame, cuts)(np.ones((1, len(frame))))
    estimates = point_estimates(frame, cuts)
    for name in ("view_stratified_auroc", "view_shortcut", "normal_view_leakage_auroc"):
        assert unweighted[name][0] == pytest.approx(estimates[name]), name
    interval = bootstrap_metrics(frame, cuts, n_boot=200)["view_shortcut"]
    assert interval["low"] <= interval["estimate"] <= interval["high"]
