"""``python -m cxrad.run``: train a detector on normal films, score the test split, write the results.

The pipeline reads top to bottom; every step lives in the module it names.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
from anomalib.engine import Engine
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch import seed_everything
from omegaconf import DictConfig, OmegaConf

from cxrad.backbone import BackboneConfig
from cxrad.data.dataset import make_loader
from cxrad.data.samples import prepare_samples
from cxrad.data.table import SplitConfig
from cxrad.logger import tracker
from cxrad.metrics import compute_image_metrics
from cxrad.scoring import ScoreCollector, predict_scores
from cxrad.preprocessing import PreprocessConfig
from cxrad.report.outputs import predictions_table, write_csv, write_heatmaps, write_json, write_plots
from cxrad.threshold import fit_threshold
from cxrad.validate import validate

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Run one experiment described by a composed cxrad config; return its metrics."""
    validate(cfg)
    seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.paths.output_dir)
    with tracker(cfg, out_dir, sweep_name=_sweep_name()) as track:
        samples, data_report = prepare_samples(
            instantiate(cfg.data.source, _convert_="all"),
            SplitConfig(**cfg.data.split, seed=cfg.seed),
            cfg.data.max_train,
            cfg.data.max_val,
            cfg.data.max_test,
        )
        write_csv(out_dir / "samples.csv", samples)
        preprocess = PreprocessConfig(**cfg.preprocessing)
        loaders = {
            split: make_loader(
                samples[samples.split == split],
                preprocess,
                cfg.data.batch_size,
                cfg.data.num_workers,
                shuffle=split == "train",
                seed=cfg.seed,
            )
            for split in ("train", "val", "test")
        }
        backbone = BackboneConfig(**OmegaConf.to_container(cfg.backbone, resolve=True))
        model = instantiate(cfg.model.detector, _convert_="all")(
            backbone=backbone,
            image_size=preprocess.image_size,
            seed=cfg.seed,
            conditioning=OmegaConf.to_container(cfg.metadata_conditioning, resolve=True),
        )
        collector = ScoreCollector()
        engine = Engine(
            default_root_dir=out_dir,
            accelerator=cfg.accelerator,
            devices=1,
            logger=False,
            max_epochs=cfg.model.max_epochs,
            callbacks=[collector],
            enable_progress_bar=cfg.progress_bar,
        )
        start = time.perf_counter()
        engine.fit(model=model, train_dataloaders=loaders["train"])
        fit_seconds = time.perf_counter() - start
        val = predict_scores(engine, model, loaders["val"], collector)
        test = predict_scores(engine, model, loaders["test"], collector, k_maps=cfg.heatmap_top_k)
        test_labels = samples.loc[test.score.index, "label"].to_numpy()
        threshold = fit_threshold(
            cfg.threshold.method,
            val.score.to_numpy(),
            test_scores=test.score.to_numpy(),
            test_labels=test_labels,
            seed=cfg.seed,
            **{k: v for k, v in cfg.threshold.items() if k != "method"},
        )
        predictions = predictions_table(samples, test.score, threshold)
        metrics = {
            **compute_image_metrics(predictions, threshold),
            "model": cfg.model.name,
            "backbone": cfg.backbone.name if cfg.model.name != "draem" else "none",
            "metadata_conditioning": cfg.metadata_conditioning.name,
            "data": cfg.data.name,
            **data_report,
            "fit_seconds": fit_seconds,
            "test_seconds": test.seconds,
        }
        write_csv(out_dir / "predictions.csv", predictions)
        write_json(out_dir / "metrics.json", metrics)
        figures = write_plots(out_dir, predictions, threshold, f"{cfg.model.name} / {metrics['backbone']}")
        grid = write_heatmaps(out_dir, samples, predictions, test.maps, preprocess)
        track.log_metrics(metrics)
        track.log_images({**figures, **({"heatmaps": grid} if grid else {})})
    log.info(
        "AUROC %.3f, leakage %.3f -> %s",
        metrics["image_auroc"] or float("nan"),
        metrics["normal_view_leakage_auroc"] or float("nan"),
        out_dir,
    )
    return metrics


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
