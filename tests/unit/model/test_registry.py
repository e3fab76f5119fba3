"""The model registry: every config has a registered builder and back, lookups fail with the choices, and a model
registered from outside ``cxrad`` runs through validate, the factory and the whole pipeline unedited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from anomalib import LearningType
from anomalib.data import Batch, InferenceBatch
from anomalib.models import AnomalibModule
from omegaconf import OmegaConf, open_dict
from torch import nn

from cxrad.model import registry
from cxrad.model.common import NO_ANOMALIB_POSTPROCESSING, pre_processor
from cxrad.model.conditioning import MetadataSteps
from cxrad.model.registry import model_spec, register_model, registered_models
from cxrad.run import run
from cxrad.validate import validate
from tests.integration.conftest import compose_config

CONF_MODELS = Path(__file__).resolve().parents[3] / "conf" / "model"


def test_every_model_config_has_a_registered_builder_and_back() -> None:
    configs = {path.stem for path in CONF_MODELS.glob("*.yaml")}
    assert set(registered_models()) == configs
    for name in configs:
        assert OmegaConf.load(CONF_MODELS / f"{name}.yaml").name == name  # the CLI choice is the config's name


def test_unknown_model_fails_in_one_line_naming_it_and_the_registered_ones() -> None:
    with pytest.raises(ValueError, match="model=nope is unknown") as error:
        model_spec("nope")
    assert "\n" not in str(error.value)
    assert all(name in str(error.value) for name in registered_models())


def test_validate_names_the_unknown_model(tmp_path: Path) -> None:
    cfg = compose_config([], tmp_path / "run", tmp_path / "cache")
    with open_dict(cfg):
        cfg.model.name = "nope"
    with pytest.raises(ValueError, match=r"model=nope is unknown; choose from \[.*'patchcore'"):
        validate(cfg)


def test_registering_a_second_builder_under_a_taken_name_fails() -> None:
    def build_patchcore() -> None: ...

    with pytest.raises(ValueError, match="model patchcore is registered twice"):
        register_model("patchcore")(build_patchcore)


class MeanImageModel(nn.Module):
    """Anomaly map: squared distance of each pixel to the training films' mean image."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("total", torch.zeros(0))
        self.count = 0

    def forward(self, image: torch.Tensor) -> InferenceBatch:
        if self.training:
            self.total = image.sum(0) if self.count == 0 else self.total + image.sum(0)
            self.count += len(image)
            return InferenceBatch(pred_score=torch.zeros(len(image)))
        anomaly_map = ((image - self.total / max(self.count, 1)) ** 2).mean(1)
        return InferenceBatch(pred_score=anomaly_map.flatten(1).amax(1), anomaly_map=anomaly_map)


class MeanImage(MetadataSteps, AnomalibModule):
    """A one-pass toy detector, defined outside ``cxrad``."""

    def __init__(self, image_size: int) -> None:
        super().__init__(pre_processor=pre_processor(image_size, None), **NO_ANOMALIB_POSTPROCESSING)
        self.model = MeanImageModel()

    def training_step(self, batch: Batch, *args: object, **kwargs: object) -> torch.Tensor:
        del args, kwargs
        self.model(batch.image)
        return torch.tensor(0.0, requires_grad=True)

    @staticmethod
    def configure_optimizers() -> None:
        return None

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        return {"max_epochs": 1, "num_sanity_val_steps": 0}

    @property
    def learning_type(self) -> LearningType:
        return LearningType.ONE_CLASS


def build_mean_image(
    image_size: int, seed: int = 0, conditioning: dict | None = None, backbone: None = None
) -> MeanImage:
    del seed, conditioning
    assert backbone is None  # registered with uses_backbone=False: the factory passes no backbone
    return MeanImage(image_size)


@pytest.fixture
def toy_model() -> Iterator[dict]:
    """Register the toy model for one test; yield its config node (what conf/model/mean_image.yaml would hold)."""
    register_model("mean_image", uses_backbone=False)(build_mean_image)
    target = f"{build_mean_image.__module__}.{build_mean_image.__qualname__}"
    yield {"name": "mean_image", "max_epochs": 1, "detector": {"_target_": target, "_partial_": True}}
    del registry.MODELS["mean_image"]


def test_a_model_registered_outside_cxrad_runs_the_whole_pipeline(toy_model: dict, tmp_path: Path) -> None:
    cfg = compose_config(["metadata_conditioning=normative"], tmp_path / "run", tmp_path / "cache")
    with open_dict(cfg):
        cfg.model = toy_model
    metrics = run(cfg)
    assert metrics["model"] == "mean_image"
    assert metrics["backbone"] == "none"  # uses_backbone=False, as DRAEM
    assert np.isfinite(metrics["image_auroc"])
    predictions = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert np.isfinite(predictions.score).all() and len(predictions) == metrics["n_test"]


def test_film_on_a_model_without_it_fails_naming_the_model_and_the_fix(toy_model: dict, tmp_path: Path) -> None:
    cfg = compose_config(["metadata_conditioning=film"], tmp_path / "run", tmp_path / "cache")
    with open_dict(cfg):
        cfg.model = toy_model
    with pytest.raises(ValueError, match="metadata_conditioning=film is not available for model=mean_image; use"):
        validate(cfg)
