"""The tiny pipeline with the classical ROI and a map aggregation: films scored inside the thorax mask."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from tests.integration.conftest import read_predictions

ROI_RUN = ("preprocessing.roi=classical", "aggregation=topk_mean", "data.min_age=30")


def _magenta_pixels(path: Path) -> int:
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(int)
    return int(((rgb[..., 0] > 200) & (rgb[..., 1] < 60) & (rgb[..., 2] > 200)).sum())


@pytest.mark.slow
def test_roi_run_scores_inside_the_thorax_and_outlines_it(run_tiny) -> None:  # noqa: ANN001
    metrics, out_dir = run_tiny(*ROI_RUN)
    assert math.isfinite(metrics["image_auroc"]) and math.isfinite(metrics["val_image_auroc"])
    assert metrics["aggregation"] == "topk_mean" and metrics["roi"] == "classical"
    samples = pd.read_csv(out_dir / "samples.csv")
    assert metrics["dropped_below_min_age"] > 0 and (samples["age"] >= 30).all()  # the age filter is recorded
    scores = read_predictions(out_dir)["score"].to_numpy()
    assert np.isfinite(scores).all() and np.unique(scores).size > 1
    val = pd.read_csv(out_dir / "val_scores.csv")  # a top-1% mean of the map lies below the map's maximum
    assert (val["raw_score"] <= val["map_max"] + 1e-6).all() and (val["raw_score"] < val["map_max"] - 1e-6).any()
    panels = sorted((out_dir / "heatmaps").glob("[0-9][0-9]_*.png"))
    assert panels, "the run wrote no heatmap panels"
    assert all(_magenta_pixels(panel) > 50 for panel in panels)  # the thorax outline is drawn on every panel
