"""global_gaussian and feature_ae through the whole pipeline on tiny phantom data (random backbone weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.integration.conftest import compose_config, predict_again, read_predictions, run_and_keep_config

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


@pytest.mark.parametrize(
    "model",
    [("model=global_gaussian",), ("model=feature_ae", *SMALL_AE)],
    ids=["global_gaussian", "feature_ae"],
)
def test_a_finished_run_scores_its_test_films_again_from_its_checkpoint(
    model: tuple[str, ...], tmp_path: Path, cache_dir: Path
) -> None:
    """Fitted Gaussians / trained autoencoder, FiLM and normative reference all come back from the run dir."""
    out = tmp_path / "run"
    cfg = compose_config([*model, "backbone=resnet18", RANDOM, "metadata_conditioning=film_normative"], out, cache_dir)
    again = predict_again(run_and_keep_config(cfg), tmp_path, heatmaps=False)
    assert again.skipped.empty
    assert len(again.merged) == len(again.expected)
    np.testing.assert_allclose(again.merged.score, again.merged.score_run, rtol=1e-4, atol=1e-4)
