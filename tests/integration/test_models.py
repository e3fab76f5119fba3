"""Every registered model runs the real pipeline on tiny phantom films, with and without map conditioning.

Each run must measure a finite image AUROC, score every test film finitely and write the anomaly-map heatmaps;
the ``normative`` run standardises those maps per metadata, so each model's maps must reach it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrad.model.registry import model_spec, registered_models
from tests.integration.conftest import TINY, read_predictions

RANDOM = "backbone.pretrained=false"
# A ResNet every model's layers are defined for (Reverse Distillation has decoders for ResNets only).
BACKBONE = "backbone=resnet18"
# Per-model shrinking for a CPU test (the configs' defaults are for real runs).
TINY_MODEL = {
    "fastflow": ["model.detector.flow_steps=2"],
    # CFLOW trains on fibre batches of its deepest level: 8 films x 2x2 positions at 64 px.
    "cflow": [
        "model.detector.coupling_blocks=2",
        "model.detector.condition_vector=32",
        "model.detector.fiber_batch_size=16",
    ],
}
# Over ~40 s a run on one CPU even shrunk (EfficientAd needs 256 px films; DRAEM trains two U-Nets).
SLOW = {"cflow", "draem", "efficient_ad"}
HEATMAP_TOP_K = next(int(o.split("=")[1]) for o in TINY if o.startswith("heatmap_top_k="))


@pytest.fixture(scope="session")
def natural_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ImageFolder standing in for ImageNette (EfficientAd's penalty images)."""
    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir()
        for index in range(2):
            pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
            cv2.imwrite(str(root / label / f"{index}.png"), pixels)
    return root


def _overrides(name: str, request: pytest.FixtureRequest, *extra: str) -> list[str]:
    """``name``'s overrides for a tiny run; the local assets a model needs are made only when it needs them."""
    backbone = [BACKBONE, RANDOM] if model_spec(name).uses_backbone else []
    tiny = TINY_MODEL.get(name, [])
    if name == "efficient_ad":
        tiny = [
            "model.detector.teacher_weights=random",
            f"model.detector.imagenet_dir={request.getfixturevalue('natural_images')}",
            "preprocessing.image_size=256",
        ]
    if name == "csflow":
        tiny = [
            "model.detector.cross_conv_hidden_channels=16",
            "model.detector.n_coupling_blocks=1",
            "preprocessing.image_size=256",
        ]
    return [f"model={name}", *backbone, *tiny, *extra]


def _cases() -> list:
    return [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name for name in registered_models()]


def _check_outputs(metrics: dict, out_dir: Path) -> None:
    assert np.isfinite(metrics["image_auroc"])
    samples = pd.read_csv(out_dir / "samples.csv")
    predictions = read_predictions(out_dir)
    assert sorted(predictions.image_path) == sorted(samples.loc[samples.split == "test", "image_path"])
    assert np.isfinite(predictions.score).all()
    panels = [path for path in (out_dir / "heatmaps").glob("*.png") if path.name != "grid.png"]
    assert (out_dir / "heatmaps" / "grid.png").is_file()
    assert len(panels) == 2 * HEATMAP_TOP_K  # the k highest- and k lowest-scoring test films' maps


@pytest.mark.parametrize("name", _cases())
def test_every_registered_model_runs_the_pipeline(run_tiny, request: pytest.FixtureRequest, name: str) -> None:
    metrics, out_dir = run_tiny(*_overrides(name, request, "metadata_conditioning=none"))
    assert metrics["model"] == name
    assert metrics["backbone"] == ("resnet18" if model_spec(name).uses_backbone else "none")
    _check_outputs(metrics, out_dir)


@pytest.mark.parametrize("name", _cases())
def test_every_registered_model_feeds_normative_map_conditioning(
    run_tiny, request: pytest.FixtureRequest, name: str
) -> None:
    metrics, out_dir = run_tiny(*_overrides(name, request, "metadata_conditioning=normative"))
    assert metrics["metadata_conditioning"] == "normative"
    _check_outputs(metrics, out_dir)
