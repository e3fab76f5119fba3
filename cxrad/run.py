"""``python -m cxrad.run``: train a detector on normal films, score the test split, write the results.

The pipeline reads top to bottom; every step lives in the module it names.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch import seed_everything
from omegaconf import DictConfig

from cxrad.data.dataset import make_loaders
from cxrad.data.samples import load_samples
from cxrad.logger import tracker
from cxrad.metrics import compute_image_metrics
from cxrad.model.factory import build_detector, make_engine
from cxrad.preprocessing import PreprocessConfig
from cxrad.report.outputs import predictions_table, write_csv, write_json, write_run_figures
from cxrad.scoring import predict_scores
from cxrad.threshold import threshold_from_config
from cxrad.validate import validate

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Run one experiment described by a composed cxrad config; return its metrics."""
    validate(cfg)
    seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.paths.output_dir)
    with tracker(cfg, out_dir, sweep_name=_sweep_name()) as track:
        samples, data_report = load_samples(cfg.data, cfg.seed)
        write_csv(out_dir / "samples.csv", samples)
        preprocess = PreprocessConfig(**cfg.preprocessing)
        loaders = make_loaders(samples, preprocess, cfg.data, cfg.seed)
        model = build_detector(cfg, preprocess.image_size)
        engine, collector = make_engine(cfg, out_dir)
        start = time.perf_counter()
        engine.fit(model=model, train_dataloaders=loaders["train"])
        fit_seconds = time.perf_counter() - start
        val = predict_scores(engine, model, loaders["val"], collector)
        test = predict_scores(engine, model, loaders["test"], collector, k_maps=cfg.heatmap_top_k)
        threshold = threshold_from_config(cfg.threshold, val.score, test.score, samples, seed=cfg.seed)
        predictions = predictions_table(samples, test.score, threshold)
        metrics = {
            **compute_image_metrics(predictions, threshold),
            **_run_facts(cfg),
            **data_report,
            "fit_seconds": fit_seconds,
            "test_seconds": test.seconds,
        }
        write_csv(out_dir / "predictions.csv", predictions)
        write_json(out_dir / "metrics.json", metrics)
        figures = write_run_figures(out_dir, samples, predictions, threshold, test.maps, preprocess)
        track.log_metrics(metrics)
        track.log_images(figures)
    log.info("AUROC %s, view leakage %s -> %s", metrics["image_auroc"], metrics["normal_view_leakage_auroc"], out_dir)
    return metrics


def _run_facts(cfg: DictConfig) -> dict[str, str]:
    backbone = "none" if cfg.model.name == "draem" else cfg.backbone.name  # DRAEM has no backbone
    return {
        "model": cfg.model.name,
        "backbone": backbone,
        "data": cfg.data.name,
        "metadata_conditioning": cfg.metadata_conditioning.name,
    }


def _sweep_name() -> str | None:
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode is not None and hydra_cfg.mode.name == "MULTIRUN"
    return Path(hydra_cfg.sweep.dir).name if multirun else None


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the image AUROC (for sweepers that optimise it)."""
    return run(cfg)["image_auroc"]


if __name__ == "__main__":
    main()
