"""``python -m cxrad.run``: train a detector on normal films, score the validation and test splits, write the results.

The pipeline reads top to bottom; every step lives in the module it names.
"""

# ruff: noqa: E402 (the noise filters go in before anomalib and timm are imported: they warn while importing)
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from cxrad.console import exit_on_config_error, print_summary, progress_bars, quiet_third_party

if __name__ == "__main__":
    quiet_third_party()

import hydra
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch import seed_everything
from omegaconf import DictConfig

from cxrad.backbone import weights_origin
from cxrad.config_errors import DataError, check_overrides, data_errors
from cxrad.data.checks import DECODE_SKIP_LOG, skip_counts, with_logged_skips
from cxrad.data.dataset import make_loaders
from cxrad.data.samples import load_samples
from cxrad.logger import tracker
from cxrad.metadata_conditioning import (
    REFERENCE,
    assign_val_roles,
    calibration_rows,
    films_with_role,
    normative_map_collector,
    require_normal_validation,
    role_counts,
    used_covariates,
)
from cxrad.metadata_conditioning.apply import films_of, fitted_conditioner
from cxrad.metadata_conditioning.normative import GridMapCollector
from cxrad.metrics import compute_localization_metrics, split_metrics, validation_metrics
from cxrad.model.checkpoint import fit_or_resume, prepare_resume
from cxrad.model.components.distributed import rank
from cxrad.model.factory import build_detector, make_engine
from cxrad.model.registry import model_spec
from cxrad.preprocessing import PreprocessConfig
from cxrad.report.outputs import predictions_table, val_scores_table, write_csv, write_json, write_run_figures
from cxrad.scoring import Scores, on_scored_maps, predict_scores
from cxrad.threshold import threshold_from_config
from cxrad.validate import validate

log = logging.getLogger(__name__)


@dataclass
class ScoredRun:
    """A fitted detector's raw scores of the validation and test films: what every conditioning option scores from.

    ``grid_maps`` holds the films' pooled anomaly maps when the option standardises maps; ``skipped`` the films
    skipped before or while scoring.
    """

    samples: pd.DataFrame
    val: Scores
    test: Scores
    grid_maps: GridMapCollector | None
    preprocess: PreprocessConfig
    fit: dict
    skipped: pd.DataFrame


def run(cfg: DictConfig) -> dict:
    """Run one experiment described by a composed cxrad config; return its metrics."""
    validate(cfg)
    seed_everything(cfg.seed, workers=True, verbose=False)
    out_dir = Path(cfg.paths.output_dir)
    with progress_bars(cfg.progress_bar), tracker(cfg, out_dir, sweep_name=_sweep_name()) as track:
        with data_errors():  # a missing CSV or folder: one clean message (main prints it as one line)
            samples, data_report, skipped = load_samples(cfg.data, cfg.seed, cfg.preprocessing.image_size)
        scored = fit_and_score(cfg, out_dir, samples, skipped)
        if scored is None:  # a DDP fit's other ranks are done: their shards are merged into rank 0's bank
            return {}
        metrics, figures, predictions = evaluate(cfg, scored, out_dir, data_report)
        track.log_metrics(metrics)
        track.log_predictions(predictions)
        track.log_images(figures)
    return metrics


def fit_and_score(cfg: DictConfig, out_dir: Path, samples: pd.DataFrame, skipped: pd.DataFrame) -> ScoredRun | None:
    """Fit the configured detector on the training films and score the validation and test films (raw scores).

    ``None`` on the extra ranks of a multi-device fit. Options that change nothing inside the detector can all be
    evaluated from one such fit (``benchmarks/real_films.py`` does: the maps are kept under a map option).
    """
    resume = prepare_resume(cfg.resume_from, out_dir, cfg.model.max_epochs)
    samples = assign_val_roles(samples, cfg.metadata_conditioning, cfg.seed)  # reference / calibration / selection
    write_csv(out_dir / "samples.csv", samples)
    require_normal_validation(cfg.metadata_conditioning, samples)  # before any fitting
    write_csv(out_dir / "skipped.csv", skipped)  # now, in case the run stops; completed after scoring
    preprocess = PreprocessConfig(**cfg.preprocessing)
    loaders = make_loaders(samples, preprocess, cfg.data, cfg.seed, skip_log=out_dir / DECODE_SKIP_LOG)
    model = build_detector(cfg, preprocess.image_size)
    grid_maps = normative_map_collector(cfg.metadata_conditioning)
    engine, collector = make_engine(cfg, out_dir, *filter(None, [grid_maps]))
    collector.keep_masks = grid_maps is not None  # localization is redone on the conditioned maps
    own_fit = model_spec(cfg.model.name).fit  # model=ensemble fits its members, each with its own engine
    if own_fit is not None:
        fit = own_fit(cfg, model, loaders, samples, out_dir)
    else:
        fit = fit_or_resume(engine, model, loaders["train"], resume, samples)
    if rank() != 0:
        return None
    if cfg.get("devices", 1) > 1:  # a DDP engine would shard the films it scores
        engine, collector = make_engine(cfg, out_dir, *filter(None, [grid_maps]), devices=1)
        collector.keep_masks = grid_maps is not None
    val = predict_scores(engine, model, loaders["val"], collector)
    test = predict_scores(engine, model, loaders["test"], collector, k_maps=cfg.heatmap_top_k)
    skipped = with_logged_skips(skipped, out_dir / DECODE_SKIP_LOG)  # + films that failed to decode
    return ScoredRun(samples, val, test, grid_maps, preprocess, fit, skipped)


def evaluate(cfg: DictConfig, scored: ScoredRun, out_dir: Path, report: dict) -> tuple[dict, list[Path], pd.DataFrame]:
    """Score the films under ``cfg.metadata_conditioning``, set the threshold, measure, write the run's outputs.

    ``scored.samples`` carries the validation roles the option needs (:func:`assign_val_roles`).
    """
    conditioning, samples, val, test, grid_maps = (
        cfg.metadata_conditioning,
        scored.samples,
        scored.val,
        scored.test,
        scored.grid_maps,
    )
    raw = pd.concat([val.score, test.score])
    conditioner = fitted_conditioner(conditioning, raw, samples, grid_maps)  # fitted on the reference films
    val_score, test_score = val.score, test.score
    if conditioner is not None:
        reference = set(films_with_role(samples, REFERENCE, val.score.index))
        scored_val = [int(i) for i in val.score.index if i not in reference]
        val_score = conditioner.score(films_of(scored_val, raw, samples, grid_maps))
        test_films = films_of(list(test.score.index), raw, samples, grid_maps)
        test_score = conditioner.score(test_films).loc[test.score.index]
        conditioner.save(out_dir, films_of(sorted(reference), raw, samples, grid_maps))  # for cxrad.predict
        conditioned = conditioner.conditioned_maps(test_films)
        if conditioned:  # localization and heatmaps on the map that was scored, not the detector's raw map
            test = on_scored_maps(test, conditioned, test_score, cfg.heatmap_top_k)
    threshold = threshold_from_config(cfg.threshold, val_score, test_score, samples, seed=cfg.seed)
    predictions = predictions_table(samples, test_score, threshold)
    val_table = val_scores_table(samples, val.score, val_score, val.map_max, threshold)
    metrics = {
        **split_metrics(predictions, threshold, cfg.metrics, seed=cfg.seed),
        **validation_metrics(predictions_table(samples, val_score, threshold), threshold, cfg.metrics),
        **compute_localization_metrics(
            test.localization, test.map_max, predictions, calibration_rows(val_table), threshold
        ),
        **_run_facts(cfg),
        **report,
        **role_counts(samples),
        **used_covariates(conditioning, samples),
        **skip_counts(scored.skipped),
        **scored.fit,
        "test_seconds": test.seconds,
    }
    write_csv(out_dir / "predictions.csv", predictions)
    write_csv(out_dir / "skipped.csv", scored.skipped)
    write_csv(out_dir / "val_scores.csv", val_table)
    write_json(out_dir / "metrics.json", metrics)
    figures = write_run_figures(out_dir, samples, predictions, threshold, test.maps, scored.preprocess)
    return metrics, figures, predictions


def _run_facts(cfg: DictConfig) -> dict[str, str]:
    uses_backbone = model_spec(cfg.model.name).uses_backbone  # DRAEM and EfficientAd have none
    return {
        "model": cfg.model.name,
        "backbone": cfg.backbone.name if uses_backbone else "none",
        "backbone_weights": weights_origin(cfg.backbone) if uses_backbone else "none",
        "data": cfg.data.name,
        "metadata_conditioning": cfg.metadata_conditioning.name,
        "aggregation": cfg.aggregation.name if "aggregation" in cfg else "native",
        "roi": cfg.preprocessing.get("roi", "none"),
    }


def _sweep_name() -> str | None:
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode is not None and hydra_cfg.mode.name == "MULTIRUN"
    return Path(hydra_cfg.sweep.dir).name if multirun else None


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the *validation* image AUROC (sweepers must never optimise a test metric).

    A config error ends the process with one line on stderr and exit status 2, before any work.
    """
    quiet_third_party()  # again: Hydra's logging setup has reset the levels
    with exit_on_config_error():
        validate(cfg)
    with exit_on_config_error(only=DataError):  # the films the config names, read before any fitting
        metrics = run(cfg)
    if metrics and rank() == 0:
        print_summary(metrics, cfg.paths.output_dir)
    return metrics.get("val_image_auroc")  # None on the extra ranks of a multi-device fit, or without val abnormals


if __name__ == "__main__":
    with exit_on_config_error():
        check_overrides(sys.argv[1:])  # unknown options and keys, before Hydra's long composition error
    main()
