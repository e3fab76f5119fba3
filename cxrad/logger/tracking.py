"""A tracker receives the run's config, metrics and figures; W&B runs always finish, even on errors."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

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


class WandbTracker(NullTracker):
    """One W&B run per job, stored inside the job's output directory."""

    def __init__(self, run: object) -> None:
        self.run = run

    def log_metrics(self, metrics: dict) -> None:
        flat = flatten(metrics)
        self.run.summary.update(flat)
        self.run.log({k: v for k, v in flat.items() if isinstance(v, int | float)})

    def log_images(self, images: dict[str, Path]) -> None:
        import wandb

        self.run.log({name: wandb.Image(str(path)) for name, path in images.items() if Path(path).is_file()})

    def log_table(self, name: str, frame: pd.DataFrame) -> None:
        import wandb

        self.run.log({name: wandb.Table(dataframe=frame)})


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
