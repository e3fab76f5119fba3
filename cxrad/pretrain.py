"""``python -m cxrad.pretrain``: train a backbone self-supervised on the normal training films, save its weights.

Only films of the training split with label 0 are read (the split of ``cxrad.run`` with the same data settings
and seed), so pretraining never sees a validation or test film. The run directory gets ``backbone.pth`` (a
timm state dict for ``backbone.weights_path``), ``metrics.csv`` (loss per epoch), ``pretrain_films.csv``
(every film a training step used) and ``pretrain.json`` (the summary, with the command that uses the weights).
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

import hydra
import pandas as pd
import timm
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from cxrad.backbone import BackboneConfig, load_pretrained
from cxrad.data.checks import DECODE_SKIP_LOG
from cxrad.data.samples import load_samples
from cxrad.preprocessing import PreprocessConfig
from cxrad.report.outputs import write_csv, write_json
from cxrad.ssl import ChestAugmentConfig, SimCLR, TwoViewFilms, build_chest_augment, two_view_loader

log = logging.getLogger(__name__)
WEIGHTS_FILE = "backbone.pth"
# Overrides that shape the split or the films; cxrad.run needs the same ones for the weights to fit its data.
SHARED_OVERRIDES = ("data", "preprocessing", "backbone", "seed", "paths")


def pretrain(cfg: DictConfig) -> dict:
    """Run one pretraining described by a composed ``conf/pretrain.yaml``; return its summary."""
    seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.paths.output_dir)
    samples, _, _ = load_samples(cfg.data, cfg.seed, cfg.preprocessing.image_size)
    films = normal_training_films(samples)
    backbone_config = BackboneConfig(**OmegaConf.to_container(cfg.backbone, resolve=True))
    model = build_simclr(backbone_config, cfg.ssl)
    preprocess = PreprocessConfig(**cfg.preprocessing)
    augment = build_chest_augment(ChestAugmentConfig(**cfg.ssl.augment), preprocess.image_size)
    dataset = TwoViewFilms(films, preprocess, augment, skip_log=out_dir / DECODE_SKIP_LOG)
    trainer = Trainer(
        default_root_dir=out_dir,
        accelerator=cfg.accelerator,
        devices=1,
        max_epochs=cfg.ssl.max_epochs,
        logger=CSVLogger(out_dir, name="", version=""),  # <run dir>/metrics.csv: train_loss per epoch
        enable_checkpointing=False,
        enable_progress_bar=cfg.progress_bar,
        log_every_n_steps=1,
    )
    trainer.fit(model, two_view_loader(dataset, cfg.ssl.batch_size, cfg.data.num_workers, cfg.seed))
    weights = out_dir / WEIGHTS_FILE
    torch.save(model.backbone.state_dict(), weights)
    write_csv(out_dir / "pretrain_films.csv", samples.loc[sorted(model.seen), ["image_path", "patient_id", "split"]])
    summary = {
        "ssl": cfg.ssl.name,
        "backbone": backbone_config.name,
        "start": "imagenet" if backbone_config.pretrained else "random",
        "n_films": len(films),
        "n_films_seen": len(model.seen),
        "epoch_loss": model.epoch_losses,
        "weights_path": str(weights.resolve()),
        "use_with": use_command(weights, _task_overrides()),
    }
    write_json(out_dir / "pretrain.json", summary)
    log.info("loss per epoch %s; use the weights with:\n  %s", model.epoch_losses, summary["use_with"])
    return summary


def normal_training_films(samples: pd.DataFrame) -> pd.DataFrame:
    """The films pretraining may read: training split, label 0.

    Raises:
        ValueError: when the split holds no normal training film.
    """
    films = samples[(samples["split"] == "train") & (samples["label"] == 0)]
    if films.empty:
        msg = "the training split has no normal films to pretrain on; check data.root and data.split"
        raise ValueError(msg)
    return films


def build_simclr(backbone: BackboneConfig, ssl: DictConfig) -> SimCLR:
    """SimCLR on ``backbone`` (its configured weights, or random ones under ``backbone.pretrained=false``)."""
    network = timm.create_model(backbone.timm_name, pretrained=False, num_classes=0)  # pooled features
    load_pretrained(network, backbone)
    return SimCLR(
        network,
        mean=backbone.mean,
        std=backbone.std,
        hidden_dim=ssl.hidden_dim,
        output_dim=ssl.output_dim,
        temperature=ssl.temperature,
        lr=ssl.lr,
        weight_decay=ssl.weight_decay,
    )


def override_key(override: str) -> str:
    """The config key a Hydra override sets, without its ``+``/``~`` prefix: ``+data.x=1`` -> ``data.x``."""
    return override.split("=", 1)[0].lstrip("+~")


def use_command(weights: Path, overrides: list[str]) -> str:
    """The ``cxrad.run`` command line that detects with these weights on the same split and films.

    Example:
        >>> use_command(Path("/r/backbone.pth"), ["data=nih", "ssl.max_epochs=3"])
        'python -m cxrad.run data=nih backbone.pretrained=true backbone.weights_path=/r/backbone.pth'
    """
    keys = [override_key(o) for o in overrides]
    kept = [
        o
        for o, key in zip(overrides, keys, strict=True)
        if key.split(".")[0] in SHARED_OVERRIDES and key not in ("backbone.pretrained", "backbone.weights_path")
    ]
    weights_overrides = ["backbone.pretrained=true", f"backbone.weights_path={weights.resolve()}"]
    return shlex.join(["python", "-m", "cxrad.run", *kept, *weights_overrides])


def _task_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


@hydra.main(version_base="1.3", config_path="../conf", config_name="pretrain")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    pretrain(cfg)


if __name__ == "__main__":
    main()
