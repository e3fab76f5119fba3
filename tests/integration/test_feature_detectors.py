"""global_gaussian and feature_ae through the whole pipeline on tiny phantom data (random backbone weights)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.integration.conftest import read_predictions

RANDOM = "backbone.pretrained=false"
SMALL_AE = ("model.detector.hidden=[16]", "model.detector.bottleneck=8")


@pytest.mark.parametrize(
    "overrides",
    [
        ("model=global_gaussian", "backbone=resnet18", RANDOM, "metadata_conditioning=film_normative"),
        ("model=global_gaussian", "backbone=efficientnet_lite0", RANDOM, "metadata_conditioning=normative"),
        ("model=feature_ae", "backbone=resnet18", RANDOM, "metadata_conditioning=film_normative", *SMALL_AE),
        ("model=feature_ae", "backbone=efficientnet_lite0", RANDOM, *SMALL_AE),  # default conditioning: none
    ],
    ids=[
        "global_gaussian-film_normative",
        "global_gaussian-lite0-normative",
        "feature_ae-film_normative",
        "feature_ae-lite0",
    ],
)
def test_runs_with_finite_metrics_and_heatmaps(run_tiny, overrides: tuple[str, ...]) -> None:
    metrics, out_dir = run_tiny(*overrides)
    assert metrics["model"] == overrides[0].split("=")[1]
    assert 0 <= metrics["image_auroc"] <= 1
    assert np.isfinite([metrics["image_auroc"], metrics["image_aupr"], metrics["threshold"]]).all()
    assert np.isfinite(read_predictions(out_dir).score).all()
    grid = Image.open(out_dir / "heatmaps" / "grid.png")
    assert min(grid.size) > 64  # overlays of several films, not an empty figure
