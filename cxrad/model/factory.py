"""Build the configured detector and the anomalib Engine that trains and scores it."""

from __future__ import annotations

from pathlib import Path

from anomalib.engine import Engine
from anomalib.models import AnomalibModule
from hydra.utils import instantiate
from lightning.pytorch import Callback
from omegaconf import DictConfig, OmegaConf

from cxrad.aggregation import film_scoring
from cxrad.backbone import BackboneConfig
from cxrad.console import bars_shown
from cxrad.model.checkpoint import WeightsOnlyCheckpoint
from cxrad.model.registry import model_spec
from cxrad.scoring import ScoreCollector


def build_detector(cfg: DictConfig, image_size: int) -> AnomalibModule:
    """Instantiate ``cfg.model.detector`` (a partial builder) with the backbone and conditioning choices.

    Models registered with ``uses_backbone=False`` get ``backbone=None``.
    """
    spec = model_spec(cfg.model.name)  # raises naming the registered models
    backbone = BackboneConfig(**OmegaConf.to_container(cfg.backbone, resolve=True)) if spec.uses_backbone else None
    builder = instantiate(cfg.model.detector, _convert_="all")
    conditioning = OmegaConf.to_container(cfg.metadata_conditioning, resolve=True)
    return builder(backbone=backbone, image_size=image_size, seed=cfg.seed, conditioning=conditioning)


def make_engine(
    cfg: DictConfig, out_dir: Path, *callbacks: Callback, devices: int | None = None
) -> tuple[Engine, ScoreCollector]:
    """anomalib Engine writing under the run directory, with a callback that collects raw scores.

    ``devices`` (default: the run's ``devices``, 1 if unset) > 1 fits with Lightning's DDP, one process per device
    on a shard of the training films (PatchCore and PaDiM merge their banks over ranks). Such an engine would
    shard predictions too: score with ``devices=1``.
    """
    collector = ScoreCollector()
    devices = int(cfg.get("devices", 1)) if devices is None else devices
    engine = Engine(
        default_root_dir=out_dir,
        accelerator=cfg.accelerator,
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=False,
        max_epochs=cfg.model.max_epochs,
        # FilmScoring first: every later callback reads the ROI-restricted map and the aggregated film score.
        callbacks=[film_scoring(cfg), collector, WeightsOnlyCheckpoint(), *callbacks],  # weights_only=True loads
        enable_progress_bar=bars_shown(cfg.progress_bar),
        enable_model_summary=False,  # the model is named in the run's summary; Lightning's table is noise
    )
    return engine, collector
