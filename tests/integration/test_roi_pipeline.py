"""The tiny pipeline with the classical ROI and a map aggregation: films scored inside the thorax mask."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from cxrad.run import run
from tests.integration.conftest import compose_config, predict_again, read_predictions

ROI_RUN = ["preprocessing.roi=classical", "aggregation=topk_mean", "data.min_age=30"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def roi_run(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """A finished tiny ROI run directory, with the ``.hydra/config.yaml`` that ``cxrad.predict`` reads."""
    out = tmp_path_factory.mktemp("roi") / "run"
    cfg = compose_config(ROI_RUN, out, cache_dir)
    run(cfg)
    (out / ".hydra").mkdir()
    OmegaConf.save(cfg, out / ".hydra" / "config.yaml")
    return out


def _magenta_pixels(path: Path) -> int:
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(int)
    return int(((rgb[..., 0] > 200) & (rgb[..., 1] < 60) & (rgb[..., 2] > 200)).sum())


def test_roi_run_scores_inside_the_thorax_and_outlines_it(roi_run: Path) -> None:
    metrics = json.loads((roi_run / "metrics.json").read_text())
    assert math.isfinite(metrics["image_auroc"]) and math.isfinite(metrics["val_image_auroc"])
    assert metrics["aggregation"] == "topk_mean" and metrics["roi"] == "classical"
    samples = pd.read_csv(roi_run / "samples.csv")
    assert metrics["dropped_below_min_age"] > 0 and (samples["age"] >= 30).all()  # the age filter is recorded
    scores = read_predictions(roi_run)["score"].to_numpy()
    assert np.isfinite(scores).all() and np.unique(scores).size > 1
    val = pd.read_csv(roi_run / "val_scores.csv")  # a top-1% mean of the map lies below the map's maximum
    assert (val["raw_score"] <= val["map_max"] + 1e-6).all() and (val["raw_score"] < val["map_max"] - 1e-6).any()
    panels = sorted((roi_run / "heatmaps").glob("[0-9][0-9]_*.png"))
    assert panels, "the run wrote no heatmap panels"
    assert all(_magenta_pixels(panel) > 50 for panel in panels)  # the thorax outline is drawn on every panel


def test_predict_scores_new_films_with_the_runs_roi_and_aggregation(roi_run: Path, tmp_path: Path) -> None:
    again = predict_again(roi_run, tmp_path)
    assert again.skipped.empty and len(again.merged) == len(again.expected)
    np.testing.assert_allclose(again.merged.score, again.merged.score_run, rtol=1e-5)
    assert all(_magenta_pixels(Path(path)) > 50 for path in again.predictions.heatmap)


def test_map_conditioning_scores_the_restricted_maps_of_another_model(run_tiny) -> None:  # noqa: ANN001
    """PaDiM + normative map conditioning + upper_percentile: the normative maps are the ROI-restricted ones."""
    overrides = ("model=padim", "backbone=resnet18", "backbone.pretrained=false", "metadata_conditioning=normative")
    metrics, out_dir = run_tiny(*overrides, "preprocessing.roi=classical", "aggregation=upper_percentile")
    assert math.isfinite(metrics["image_auroc"]) and metrics["aggregation"] == "upper_percentile"
    assert np.isfinite(read_predictions(out_dir)["score"]).all()
    panels = sorted((out_dir / "heatmaps").glob("[0-9][0-9]_*.png"))
    assert panels and all(_magenta_pixels(panel) > 50 for panel in panels)
