"""Every registered model runs the real pipeline on tiny phantom films, with and without map conditioning.

Each run must measure a finite image AUROC, score every test film finitely and write the anomaly-map heatmaps;
the ``normative`` run standardises those maps per metadata, so each model's maps must reach it.
"""

from __future__ import annotations

from pathlib import Path

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
    "cflow": ["model.detector.coupling_blocks=2", "model.detector.condition_vector=32"],
}
SLOW = {"cflow"}
HEATMAP_TOP_K = next(int(o.split("=")[1]) for o in TINY if o.startswith("heatmap_top_k="))  # over ~20 s on one CPU core even shrunk


def _overrides(name: str, *extra: str) -> list[str]:
    backbone = [BACKBONE, RANDOM] if model_spec(name).uses_backbone else []
    return [f"model={name}", *backbone, *TINY_MODEL.get(name, []), *extra]


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
def test_every_registered_model_runs_the_pipeline(run_tiny, name: str) -> None:
    metrics, out_dir = run_tiny(*_overrides(name, "metadata_conditioning=none"))
    assert metrics["model"] == name
    assert metrics["backbone"] == ("resnet18" if model_spec(name).uses_backbone else "none")
    _check_outputs(metrics, out_dir)


@pytest.mark.parametrize("name", _cases())
def test_every_registered_model_feeds_normative_map_conditioning(run_tiny, name: str) -> None:
    metrics, out_dir = run_tiny(*_overrides(name, "metadata_conditioning=normative"))
    assert metrics["metadata_conditioning"] == "normative"
    _check_outputs(metrics, out_dir)
