"""CS-Flow's own rules: films big enough for its three scales, and its encoder weights on disk (no download)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from torchvision.models import efficientnet_b5

from cxrad.model.csflow import build_csflow, validate_csflow

CONF = Path(__file__).resolve().parents[3] / "conf"


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=["model=csflow", *overrides])


def test_films_too_small_for_the_quarter_scale_are_refused() -> None:
    with pytest.raises(ValueError, match=r"image_size >= 256 .* got 128; set preprocessing.image_size=256"):
        validate_csflow(_cfg("preprocessing.image_size=128", "model.detector.encoder_weights=random"))


def test_a_missing_weights_file_names_the_download_and_the_way_out(tmp_path: Path) -> None:
    missing = tmp_path / "b5.pth"
    with pytest.raises(ValueError, match=r"b5.pth is not a file .*efficientnet_b5_lukemelas.*encoder_weights=random"):
        validate_csflow(_cfg("preprocessing.image_size=256", f"model.detector.encoder_weights={missing}"))
    validate_csflow(_cfg("preprocessing.image_size=256", "model.detector.encoder_weights=random"))


def test_a_local_weights_file_is_the_encoder(tmp_path: Path) -> None:
    torch.manual_seed(1)
    saved = efficientnet_b5().state_dict()  # stands in for torchvision's ImageNet file (same keys)
    path = tmp_path / "b5.pth"
    torch.save(saved, path)

    def encoder(model) -> dict:
        return model.model.feature_extractor.feature_extractor.feature_extractor.state_dict()

    loaded = encoder(build_csflow(256, encoder_weights=str(path), cross_conv_hidden_channels=8, seed=2))
    fresh = encoder(build_csflow(256, encoder_weights="random", cross_conv_hidden_channels=8, seed=2))
    assert all(torch.equal(loaded[k], saved[k]) for k in loaded)
    assert not torch.equal(fresh["features.0.0.weight"], saved["features.0.0.weight"])
