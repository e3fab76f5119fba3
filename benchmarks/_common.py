"""Shared pieces of the benchmark scripts: synthetic films, loaders, an Engine, AUROC, machine description."""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from pathlib import Path

import pandas as pd
import torch
from anomalib.engine import Engine
from anomalib.models import AnomalibModule
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

from cxrad.backbone import BackboneConfig
from cxrad.data.dataset import make_loader
from cxrad.data.samples import synthetic_table
from cxrad.preprocessing import PreprocessConfig
from cxrad.scoring import ScoreCollector, predict_scores

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def compose_config(*overrides: str) -> DictConfig:
    """The real cxrad config with ``overrides`` (no Hydra run directory needed)."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        return compose("config", overrides=list(overrides))


def run_pipeline(overrides: list[str], output_dir: Path) -> tuple[DictConfig, dict]:
    """Compose the real config with ``overrides`` as Hydra would for one job and run ``cxrad.run`` into
    ``output_dir``; return the composed config and the run's metrics."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from cxrad.run import run

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        del cfg.hydra
    return cfg, run(cfg)


def backbone_config(cfg: DictConfig) -> BackboneConfig:
    return BackboneConfig(**OmegaConf.to_container(cfg.backbone, resolve=True))


def synthetic_films(n_normal: int, n_abnormal: int, image_size: int, seed: int = 0) -> pd.DataFrame:
    """Phantom films (cached under ``.cache/synthetic``): columns of the sample table, ``label`` 0/1."""
    cfg = compose_config(
        f"data.source.n_normal={n_normal}",
        f"data.source.n_abnormal={n_abnormal}",
        f"data.source.image_size={image_size}",
        f"seed={seed}",
    )
    source = OmegaConf.to_container(cfg.data.source, resolve=True)
    source.pop("_target_")
    frame, _ = synthetic_table(**source)
    return frame.reset_index(drop=True)


def loader(frame: pd.DataFrame, image_size: int, batch_size: int = 16, shuffle: bool = False) -> DataLoader:
    preprocess = PreprocessConfig(**{**compose_config().preprocessing, "image_size": image_size, "cache": False})
    return make_loader(frame, preprocess, batch_size, num_workers=0, shuffle=shuffle, seed=0)


def engine(out_dir: Path, accelerator: str = "cpu", callbacks: tuple = ()) -> tuple[Engine, ScoreCollector]:
    collector = ScoreCollector()
    eng = Engine(
        default_root_dir=out_dir,
        accelerator=accelerator,
        devices=1,
        logger=False,
        max_epochs=1,
        callbacks=[collector, *callbacks],
        enable_progress_bar=False,
    )
    return eng, collector


def fit_seconds(eng: Engine, model: AnomalibModule, train: DataLoader) -> float:
    start = time.perf_counter()
    eng.fit(model=model, train_dataloaders=train)
    return time.perf_counter() - start


def test_auroc(eng: Engine, model: AnomalibModule, test: DataLoader, collector: ScoreCollector) -> float:
    scores = predict_scores(eng, model, test, collector).score
    labels = test.dataset.table.label.reindex(scores.index)
    return float(roc_auc_score(labels.to_numpy(), scores.to_numpy()))


def peak_rss_gb() -> float:
    """This process's peak resident memory (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def machine() -> dict:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "platform": platform.platform(),
        "torch": torch.__version__,
    }


def write_json(name: str, payload: dict, out: Path | None = None) -> Path:
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2))
    return path
