"""``cxrad.pretrain`` on tiny phantom films: the loss falls, the weights reach ``cxrad.run``, no held-out film read."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import timm
import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch import seed_everything
from omegaconf import open_dict

from cxrad.backbone import BackboneConfig
from cxrad.data.samples import load_samples
from cxrad.model import build_patchcore
from cxrad.pretrain import WEIGHTS_FILE, pretrain
from cxrad.run import run
from tests.integration.conftest import CONF, TINY, compose_config

# The phantom data of the tiny cxrad.run, so both see the same split. resnet18 from random weights: a random
# EfficientNet maps two views of one film to unrelated embeddings and needs far more steps than a test allows.
BACKBONE = ["backbone=resnet18", "backbone.pretrained=false"]
# More normal films than the tiny run's 40, so that each epoch has several steps and its mean loss is not noise.
DATA = [*(o for o in TINY if o.startswith(("data.", "preprocessing."))), "data.source.n_normal=100"]
# One pretraining plus a tiny cxrad.run: ~40 s on a free CPU core, minutes on a busy one.
pytestmark = pytest.mark.slow
SSL = ["ssl.max_epochs=4", "ssl.batch_size=8", "progress_bar=false", "accelerator=cpu"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> tuple[dict, Path, object]:
    """One pretraining run: (summary, run dir, composed config)."""
    out_dir = tmp_path_factory.mktemp("pretrain")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("pretrain", overrides=[*DATA, *BACKBONE, *SSL])
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.cache_dir = str(out_dir), str(cache_dir)
    return pretrain(cfg), out_dir, cfg


def test_contrastive_loss_decreases_over_epochs(pretrained) -> None:
    summary, out_dir, _ = pretrained
    losses = summary["epoch_loss"]
    assert len(losses) == 4
    assert losses[-1] < losses[0]
    logged = pd.read_csv(out_dir / "metrics.csv").dropna(subset=["train_loss"])
    assert logged["train_loss"].tolist() == pytest.approx(losses, rel=1e-4)  # the per-epoch CSV log


def test_pretraining_reads_only_normal_training_films(pretrained) -> None:
    summary, out_dir, cfg = pretrained
    samples, _, _ = load_samples(cfg.data, cfg.seed, cfg.preprocessing.image_size)
    used = set(pd.read_csv(out_dir / "pretrain_films.csv")["image_path"])
    normal_train = set(samples.loc[(samples.split == "train") & (samples.label == 0), "image_path"])
    held_out = set(samples.loc[samples.split.isin(["val", "test"]), "image_path"])
    assert used and used <= normal_train
    assert not used & held_out
    assert summary["n_films"] == len(normal_train)


def test_saved_weights_load_through_weights_path_into_the_detector(pretrained) -> None:
    _, out_dir, _ = pretrained
    trained = torch.load(out_dir / WEIGHTS_FILE, weights_only=True)
    seed_everything(0)
    initial = timm.create_model("resnet18", pretrained=False, num_classes=0).state_dict()
    config = BackboneConfig(
        "resnet18", "resnet18", weights_path=str(out_dir / WEIGHTS_FILE), layers={"patchcore": ["layer2", "layer3"]}
    )
    extractor = build_patchcore(config, image_size=64).model.feature_extractor.extractor.feature_extractor
    loaded = extractor.state_dict()
    assert loaded and all(torch.equal(tensor, trained[name]) for name, tensor in loaded.items())
    weights = [name for name in loaded if name.endswith("weight")]
    changed = [name for name in weights if not torch.equal(loaded[name], initial[name])]
    assert len(changed) == len(weights)  # training moved every layer the detector uses


def test_a_run_with_the_weights_records_them(pretrained, tmp_path: Path, cache_dir: Path) -> None:
    summary, out_dir, _ = pretrained
    weights = str(out_dir / WEIGHTS_FILE)
    assert f"backbone.weights_path={Path(weights).resolve()}" in summary["use_with"]
    assert "backbone.pretrained=true" in summary["use_with"]  # weights_path is ignored under pretrained=false
    overrides = [*DATA, "backbone=resnet18", f"backbone.weights_path={weights}", "metadata_conditioning=none"]
    metrics = run(compose_config(overrides, tmp_path / "run", cache_dir))
    assert metrics["backbone_weights"] == weights
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["backbone_weights"] == weights
    assert 0.0 <= metrics["image_auroc"] <= 1.0
