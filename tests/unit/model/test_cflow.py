"""CFLOW's fibre batches: a short last batch is skipped with a warning; a config with a short full batch is refused."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from anomalib.data import ImageBatch
from hydra import compose, initialize_config_dir

from cxrad.backbone import BackboneConfig
from cxrad.model.cflow import build_cflow, validate_cflow

CONF = Path(__file__).resolve().parents[3] / "conf"


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=["model=cflow", *overrides])


def test_a_batch_too_small_for_one_fibre_batch_is_refused_with_the_fix() -> None:
    # efficientnet_lite0's cflow layers end at stride 32: 4 films x 2 x 2 positions at 64 px = 16 fibres < 64.
    cfg = _cfg("preprocessing.image_size=64", "data.batch_size=4")
    with pytest.raises(ValueError, match=r"has 16 at the deepest level; lower model.detector.fiber_batch_size to 16"):
        validate_cflow(cfg)
    validate_cflow(_cfg("preprocessing.image_size=64", "data.batch_size=16"))  # 64 fibres: enough


def test_the_short_last_batch_of_an_epoch_is_skipped_and_named(caplog: pytest.LogCaptureFixture) -> None:
    backbone = BackboneConfig(
        name="resnet18", timm_name="resnet18", pretrained=False, layers={"cflow": ["layer2", "layer3", "layer4"]}
    )
    model = build_cflow(backbone, 64, fiber_batch_size=16, coupling_blocks=1, condition_vector=16)
    with caplog.at_level(logging.WARNING, logger="cxrad.model.cflow"):
        assert model.training_step(ImageBatch(image=torch.randn(3, 3, 64, 64))) is None  # 3 x 2 x 2 = 12 < 16
    assert "skips a training batch of 3 films: 12 fibres at its deepest level < fiber_batch_size=16" in caplog.text
