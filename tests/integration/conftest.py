"""Compose the real Hydra config, shrunk to tiny synthetic data, and run the real pipeline."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from cxrad.predict import predict
from cxrad.run import run

CONF = Path(__file__).resolve().parents[2] / "conf"

TINY = [
    "data.source.realism=simple",  # the easy phantom: these tests check mechanics (a lesion is found, ...)
    "data.source.n_normal=40",
    "data.source.n_abnormal=16",
    "data.split.val_fraction=0.3",  # val now also holds abnormal films; normals: half reference, half calibration
    "data.split.test_fraction=0.3",
    "data.batch_size=8",
    "preprocessing.image_size=64",  # the synthetic films are generated at this size too
    "model.max_epochs=1",
    "heatmap_top_k=2",
    "progress_bar=false",
    "accelerator=cpu",
]
# Mechanics tests that choose no model run PatchCore (one fast fit); the default ensemble has its own tests.
PINNED_MODEL = "model=patchcore"


def compose_config(overrides: list[str], out_dir: Path, cache_dir: Path) -> DictConfig:
    synthetic = not any(o.startswith("data=") and o != "data=synthetic" for o in overrides)
    tiny = [o for o in TINY if synthetic or not o.startswith("data.source.")]
    if not any(o.split("=")[0].lstrip("+") == "model" for o in overrides):
        tiny.append(PINNED_MODEL)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*tiny, *overrides], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir)
        cfg.paths.cache_dir = str(cache_dir)
        del cfg.hydra
    return cfg


@pytest.fixture
def run_tiny(tmp_path: Path, cache_dir: Path) -> Callable[..., tuple[dict, Path]]:
    """Run the pipeline with ``overrides`` on tiny data; return (metrics.json, output dir)."""

    def _run(*overrides: str, name: str = "run") -> tuple[dict, Path]:
        out_dir = tmp_path / name
        metrics = run(compose_config(list(overrides), out_dir, cache_dir))
        assert json.loads((out_dir / "metrics.json").read_text()) == metrics
        return metrics, out_dir

    return _run


def read_predictions(out_dir: Path) -> pd.DataFrame:
    return pd.read_csv(out_dir / "predictions.csv")


def run_and_keep_config(cfg: DictConfig) -> Path:
    """Run ``cfg`` and save it as the ``.hydra/config.yaml`` that ``cxrad.predict`` and ``cxrad.heatmap`` read."""
    out = Path(cfg.paths.output_dir)
    metrics = run(cfg)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    (out / ".hydra").mkdir()
    OmegaConf.save(cfg, out / ".hydra" / "config.yaml")
    return out


class PredictedAgain(NamedTuple):
    """A run's own test films scored again by ``cxrad.predict``, beside what the run wrote."""

    expected: pd.DataFrame  # the run's predictions.csv
    predictions: pd.DataFrame  # cxrad.predict's
    skipped: pd.DataFrame
    out: Path
    merged: pd.DataFrame  # on image_path; the run's columns suffixed _run


def predict_again(run_dir: Path, work: Path, *, heatmaps: bool = True) -> PredictedAgain:
    """``cxrad.predict`` on a CSV of the run's test films (path, age, sex, view, label), written under ``work``."""
    expected = read_predictions(run_dir)
    films = work / "films.csv"
    expected[["image_path", "age", "sex", "view", "label"]].to_csv(films, index=False)
    predictions, skipped, out = predict(run_dir, films, work / "out", heatmaps=heatmaps)
    merged = expected.merge(predictions, on="image_path", suffixes=("_run", ""))
    return PredictedAgain(expected, predictions, skipped, out, merged)
