"""A tracker receives the run's config, metrics and figures; W&B runs always finish, even on errors."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from sklearn.metrics import precision_recall_curve

from cxrad.metrics.curves import has_both_classes, roc_points

log = logging.getLogger(__name__)


def flatten(metrics: dict, prefix: str = "") -> dict[str, float | int | str]:
    """Nested metric dict -> ``{'subgroups/view/AP/auroc': 0.7, ...}`` without None/NaN."""
    flat: dict[str, float | int | str] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}/"))
        elif value is not None and not (isinstance(value, float) and math.isnan(value)):
            flat[name] = value
    return flat


class NullTracker:
    """Logs nothing (``logger=none``)."""

    def log_metrics(self, metrics: dict) -> None:
        del metrics

    def log_images(self, images: dict[str, Path]) -> None:
        del images

    def log_table(self, name: str, frame: pd.DataFrame) -> None:
        del name, frame

    def log_predictions(self, predictions: pd.DataFrame) -> None:
        del predictions


def metric_tables(metrics: dict) -> dict[str, pd.DataFrame]:
    """The nested parts of ``metrics.json`` as flat tables: subgroups, per finding, nodule size bands."""
    subgroups = [
        {"attribute": attribute, "group": group, **values}
        for attribute, groups in (metrics.get("subgroups") or {}).items()
        for group, values in groups.items()
    ]
    findings = [{"finding": name, **values} for name, values in (metrics.get("per_finding_auroc") or {}).items()]
    bands = metrics.get("nodule_auroc_by_size") or {}
    nodules = [{"size_band": name, **values} for name, values in bands.items() if isinstance(values, dict)]
    tables = {"subgroups": subgroups, "per_finding_auroc": findings, "nodule_auroc_by_size": nodules}
    return {name: pd.DataFrame(rows) for name, rows in tables.items() if rows}


def curve_tables(predictions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """ROC (``fpr``, ``tpr``, ``threshold``) and precision-recall points of the test scores (empty if one class)."""
    labels, scores = predictions["label"].to_numpy(), predictions["score"].to_numpy(np.float64)
    if not has_both_classes(labels):
        return {}
    fpr, tpr, cuts = roc_points(labels, scores)
    precision, recall, _ = precision_recall_curve(labels, scores)
    return {
        "roc_curve": pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.where(np.isfinite(cuts), cuts, np.nan)}),
        "pr_curve": pd.DataFrame({"recall": recall, "precision": precision}),
    }


class WandbTracker(NullTracker):
    """One W&B run per job, stored inside the job's output directory."""

    def __init__(self, run: object) -> None:
        self.run = run

    def log_metrics(self, metrics: dict) -> None:
        flat = flatten(metrics)
        self.run.summary.update(flat)
        self.run.log({k: v for k, v in flat.items() if isinstance(v, int | float)})
        for name, frame in metric_tables(metrics).items():
            self.log_table(name, frame)

    def log_images(self, images: dict[str, Path]) -> None:
        import wandb

        self.run.log({name: wandb.Image(str(path)) for name, path in images.items() if Path(path).is_file()})

    def log_table(self, name: str, frame: pd.DataFrame) -> None:
        import wandb

        self.run.log({name: wandb.Table(dataframe=frame)})

    def log_predictions(self, predictions: pd.DataFrame) -> None:
        """ROC and PR curves as W&B line plots over logged tables of their points."""
        import wandb

        axes = {
            "roc_curve": ("fpr", "tpr", "ROC (test films)"),
            "pr_curve": ("recall", "precision", "Precision-recall"),
        }
        for name, frame in curve_tables(predictions).items():
            x, y, title = axes[name]
            self.run.log({name: wandb.plot.line(wandb.Table(dataframe=frame), x, y, title=title)})


def _choices(cfg: DictConfig) -> dict[str, str]:
    return {
        "model": cfg.model.name,
        "backbone": cfg.backbone.name,
        "data": cfg.data.name,
        "conditioning": cfg.metadata_conditioning.name,
        "threshold": cfg.threshold.method,
    }


@contextlib.contextmanager
def tracker(cfg: DictConfig, output_dir: Path, sweep_name: str | None = None) -> Iterator[NullTracker]:
    """Yield the configured tracker; a W&B run is finished on exit whatever happens inside."""
    if cfg.logger.name == "none":
        yield NullTracker()
        return
    import wandb

    choices = _choices(cfg)
    run = wandb.init(
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        mode=cfg.logger.mode,
        dir=str(output_dir),
        group=cfg.logger.group or sweep_name,
        tags=[f"{k}={v}" for k, v in choices.items()] + list(cfg.logger.tags),
        name="-".join(choices.values()),
        config=OmegaConf.to_container(cfg, resolve=True),
        reinit="finish_previous",
    )
    exit_code = 1
    try:
        yield WandbTracker(run)
        exit_code = 0
    finally:
        wandb.finish(exit_code=exit_code)
        log.info("W&B run stored in %s (mode=%s)", output_dir / "wandb", cfg.logger.mode)
