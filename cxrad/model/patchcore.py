"""PatchCore with configurable local aggregation, a fast greedy coreset and optional FiLM conditioning."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from anomalib.models import Patchcore
from anomalib.models.image.patchcore.torch_model import PatchcoreModel
from torch import nn

from cxrad.backbone import BackboneConfig, load_pretrained, validate_layers
from cxrad.model.common import NO_ANOMALIB_POSTPROCESSING, build_normative_film, pre_processor
from cxrad.model.components.aggregation import LocalAggregation
from cxrad.model.components.coreset import chunked_k_center_greedy
from cxrad.model.conditioning import MemoryBankMetadata, apply_film

log = logging.getLogger(__name__)


class ConditionedPatchcoreModel(PatchcoreModel):
    """anomalib's PatchCore network with FiLM applied to every patch embedding (identity until fitted)."""

    metadata: torch.Tensor | None = None
    grid: tuple[int, int] = (0, 0)

    def generate_embedding(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        embedding = super().generate_embedding(features)
        self.grid = tuple(embedding.shape[-2:])
        return apply_film(self, embedding, "PatchCore")


class CxrPatchcore(MemoryBankMetadata, Patchcore):
    """anomalib PatchCore whose bank is FiLM-normalised (optional) and subsampled by :func:`k_center_greedy`."""

    def __init__(
        self,
        backbone: str,
        layers: Sequence[str],
        coreset_sampling_ratio: float,
        num_neighbors: int,
        coreset_seed: int = 0,
        coreset_chunk_size: int = 16_384,
        film: dict | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(
            backbone=backbone,
            layers=layers,
            pre_trained=False,
            coreset_sampling_ratio=coreset_sampling_ratio,
            num_neighbors=num_neighbors,
            **kwargs,
        )
        self.model.__class__ = ConditionedPatchcoreModel  # same network and weights, one extra hook
        self.model.film = build_normative_film(film)
        self.coreset_seed = coreset_seed
        self.coreset_chunk_size = coreset_chunk_size
        self.train_metadata: list[torch.Tensor] = []

    def fit(self) -> None:
        store = self.model.embedding_store
        if not store:
            msg = "PatchCore saw no training films: the embedding store is empty; check the train split"
            raise ValueError(msg)
        bank = torch.vstack(store)
        store.clear()
        metadata = self.pop_train_metadata()
        if self.model.film is not None:
            bank = self._fit_film(bank, metadata)
        n_select = max(1, int(len(bank) * self.coreset_sampling_ratio))
        log.info("coreset: %d of %d patch embeddings", n_select, len(bank))
        index = chunked_k_center_greedy(bank, n_select, chunk_size=self.coreset_chunk_size, seed=self.coreset_seed)
        self.model.memory_bank = bank[index].contiguous()

    def _fit_film(self, bank: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:
        """Fit FiLM on the training films' embedding maps and return the bank in conditioned form."""
        height, width = self.model.grid
        maps = bank.reshape(len(metadata), height, width, -1).permute(0, 3, 1, 2)
        self.model.film.fit(maps, metadata)
        conditioned = self.model.film(maps, metadata.to(maps.device))
        return conditioned.permute(0, 2, 3, 1).reshape(-1, bank.shape[1])


def build_patchcore(
    backbone: BackboneConfig,
    image_size: int,
    coreset_sampling_ratio: float = 0.1,
    num_neighbors: int = 9,
    patch_size: int = 3,
    patch_stride: int = 1,
    coreset_chunk_size: int = 16_384,
    seed: int = 0,
    conditioning: dict | None = None,
) -> CxrPatchcore:
    """PatchCore on ``backbone.layers['patchcore']`` with ``patch_size``/``patch_stride`` aggregation."""
    layers = backbone.layers_for("patchcore")
    validate_layers(backbone.timm_name, layers)
    model = CxrPatchcore(
        backbone=backbone.timm_name,
        layers=layers,
        coreset_sampling_ratio=coreset_sampling_ratio,
        num_neighbors=num_neighbors,
        coreset_seed=seed,
        coreset_chunk_size=coreset_chunk_size,
        film=conditioning if (conditioning or {}).get("name") == "film" else None,
        pre_processor=pre_processor(image_size, backbone),
        **NO_ANOMALIB_POSTPROCESSING,
    )
    load_pretrained(model.model.feature_extractor.feature_extractor, backbone)
    model.model.feature_extractor = LocalAggregation(model.model.feature_extractor, patch_size, patch_stride)
    model.model.feature_pooler = nn.Identity()
    return model
