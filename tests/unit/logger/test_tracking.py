"""What the W&B tracker turns a run's results into (tables and curve points), without W&B."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrad.logger.tracking import curve_tables, flatten, metric_tables


def test_metric_tables_flatten_the_nested_metrics() -> None:
    metrics = {
        "subgroups": {"view": {"PA": {"auroc": 0.8, "n": 5}, "AP": {"auroc": None, "n": 0}}},
        "per_finding_auroc": {"Nodule": {"auroc": 0.7, "n_positive": 3}},
        "nodule_auroc_by_size": {"<10 mm": {"auroc": 0.6, "n_positive": 2}, "n_unknown_size": 1},
    }
    tables = metric_tables(metrics)
    assert tables["subgroups"][["attribute", "group", "auroc"]].values.tolist()[0] == ["view", "PA", 0.8]
    assert tables["per_finding_auroc"].loc[0, "finding"] == "Nodule"
    assert tables["nodule_auroc_by_size"]["size_band"].tolist() == ["<10 mm"]  # the count is not a band
    assert metric_tables({}) == {}


def test_curve_tables_hold_every_roc_point() -> None:
    predictions = pd.DataFrame({"label": [0, 0, 1, 1], "score": [0.1, 0.4, 0.35, 0.8]})
    curves = curve_tables(predictions)
    roc = curves["roc_curve"]
    assert roc[["fpr", "tpr"]].values.tolist() == [[0, 0], [0, 0.5], [0.5, 0.5], [0.5, 1], [1, 1]]
    assert np.isnan(roc.loc[0, "threshold"])  # sklearn's +inf first cut is not JSON
    assert curves["pr_curve"]["precision"].iloc[0] == pytest.approx(0.5)
    assert curve_tables(predictions.assign(label=0)) == {}


def test_flatten_drops_missing_values() -> None:
    assert flatten({"a": {"b": 1.0, "c": None}, "d": float("nan"), "e": "x"}) == {"a/b": 1.0, "e": "x"}
