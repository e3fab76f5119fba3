"""PaDiM with configurable local aggregation and optional FiLM conditioning before the Gaussians."""

from __future__ import annotations

import torch
from anomalib.models import Padim
from anomalib.models.image.padim.torch_model import PadimModel

from cxrad.backbone import BackboneConfig, load_pretrained, validate_layers
from cxrad.model.common import NO_ANOMALIB_POSTPROCESSING, build_normative_film, pre_processor
from cxrad.model.components.aggregation import LocalAggregation
from cxrad.model.conditioning import MemoryBankMetadata, apply_film


class ConditionedPadimModel(PadimModel):
    """anomalib's PaDiM network with FiLM applied to the embedding (identity until fitted)."""

    metadata: torch.Tensor | None = None

    def generate_embedding(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return apply_film(self, super().generate_embedding(features), "PaDiM")


class CxrPadim(MemoryBankMetadata, Padim):
    """anomalib PaDiM whose per-position Gaussians are fitted on FiLM-normalised embeddings (optional)."""

    def __init__(self, *args: object, film: dict | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.model.__class__ = ConditionedPadimModel  # same network and weights, one extra hook
        self.model.film = build_normative_film(film)
        self.train_metadata: list[torch.Tensor] = []

    def fit(self) -> None:
        if not self.model.memory_bank:
            msg = "PaDiM saw no training films: the memory bank is empty; check the train split"
            raise ValueError(msg)
        bank = torch.vstack(self.model.memory_bank)
        self.model.memory_bank = []
        metadata = self.pop_train_metadata()
        if self.model.film is not None:
            self.model.film.fit(bank, metadata)
            bank = self.model.film(bank, metadata.to(bank.device))
        self.model.gaussian.fit(bank)


def build_padim(
    backbone: BackboneConfig,
    image_size: int,
    n_features: int = 100,
    patch_size: int = 1,
    patch_stride: int = 1,
    seed: int = 0,
    conditioning: dict | None = None,
) -> CxrPadim:
    """PaDiM on ``backbone.layers['padim']``; ``n_features`` random channels are kept (seeded)."""
    layers = backbone.layers_for("padim")
    validate_layers(backbone.timm_name, layers)
    # PaDiM draws its channel subset with the global RNG at construction; fork it so that draw is seeded
    # and nothing outside changes.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CxrPadim(
            backbone=backbone.timm_name,
            layers=layers,
            pre_trained=False,
            n_features=n_features,
            film=conditioning if (conditioning or {}).get("name") == "film" else None,
            pre_processor=pre_processor(image_size, backbone),
            **NO_ANOMALIB_POSTPROCESSING,
        )
    load_pretrained(model.model.feature_extractor.feature_extractor, backbone)
    model.model.feature_extractor = LocalAggregation(model.model.feature_extractor, patch_size, patch_stride)
    return model
