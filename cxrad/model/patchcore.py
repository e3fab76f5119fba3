"""PatchCore with configurable local aggregation, a fast greedy coreset and optional FiLM conditioning."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from anomalib.models import Patchcore
from anomalib.models.image.patchcore.torch_model import PatchcoreModel
from omegaconf import DictConfig
from torch import nn

from cxrad.backbone import BackboneConfig, load_pretrained, validate_layers
from cxrad.metadata_conditioning.options import conditions_features
from cxrad.model.common import (
    NO_ANOMALIB_POSTPROCESSING,
    build_normative_film,
    check_odd_patch,
    pre_processor,
    rebuilt_as,
)
from cxrad.model.components.aggregation import LocalAggregation
from cxrad.model.components.coreset import GlobalCoreset, StreamingCoreset, make_coreset
from cxrad.model.components.distributed import gather_rows, world_size
from cxrad.model.components.knn import SEARCH_METHODS, BankSearch
from cxrad.model.conditioning import FilmWarmup, MemoryBankMetadata, apply_film
from cxrad.model.registry import register_model

log = logging.getLogger(__name__)


class ConditionedPatchcoreModel(PatchcoreModel):
    """anomalib's PatchCore network with FiLM applied to every patch embedding (identity until fitted)."""

    metadata: torch.Tensor | None = None
    grid: tuple[int, int] = (0, 0)

    def generate_embedding(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        embedding = super().generate_embedding(features)
        self.grid = tuple(embedding.shape[-2:])
        return apply_film(self, embedding, "PatchCore")

    search_method: str = "exact"
    search_nprobe: int = 8
    _search: BankSearch | None = None

    def nearest_neighbors(self, embedding: torch.Tensor, n_neighbors: int) -> tuple[torch.Tensor, torch.Tensor]:
        """anomalib's contract (1-D results for one neighbour) on a :class:`BankSearch` built once per bank."""
        if self._search is None or self._search.bank is not self.memory_bank:
            self._search = BankSearch(self.memory_bank, self.search_method, nprobe=self.search_nprobe)
        distances, indices = self._search.search(embedding, n_neighbors)
        return (distances[:, 0], indices[:, 0]) if n_neighbors == 1 else (distances, indices)


class CxrPatchcore(MemoryBankMetadata, Patchcore):
    """anomalib PatchCore whose bank is built in one streaming pass: FiLM (optional), then a greedy coreset.

    Each training batch's patch embeddings go straight into a :class:`StreamingCoreset` (or, with
    ``coreset_chunk_size=None``, the whole bank is kept for one global greedy), so peak memory is one chunk plus
    the coreset instead of every patch of every film. With FiLM the first ``film_fit_films`` films are held back
    until the FiLM is fitted on them (:class:`FilmWarmup`).

    Under Lightning's DDP (several devices) each rank streams its own shard into its own coreset and :meth:`fit`
    merges them, so every rank ends with the same bank and the same FiLM (see ``docs/scale_out.md``).
    """

    def __init__(
        self,
        backbone: str,
        layers: Sequence[str],
        coreset_sampling_ratio: float,
        num_neighbors: int,
        coreset_seed: int = 0,
        coreset_chunk_size: int | None = 16_384,
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
        self.model = rebuilt_as(  # anomalib's network, one extra hook
            self.model,
            ConditionedPatchcoreModel,
            backbone=backbone,
            layers=layers,
            pre_trained=False,
            num_neighbors=num_neighbors,
        )
        self.model.film = build_normative_film(film)
        self.coreset_seed = coreset_seed
        self.coreset_chunk_size = coreset_chunk_size
        self.film_fit_films = int((film or {}).get("fit_films", 256))
        self.train_metadata: list[torch.Tensor] = []
        self._start_bank()

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """anomalib's, less its ``devices: 1``: the bank is fitted per shard and merged (see :meth:`fit`)."""
        return {key: value for key, value in super().trainer_arguments.items() if key != "devices"}

    def _start_bank(self) -> None:
        # The coreset is made on first use (_coreset): it holds a torch.Generator, and a module holding one cannot
        # be sent to ddp_spawn's worker processes (torch fails to share the generator's state tensor).
        self.coreset: StreamingCoreset | GlobalCoreset | None = None
        self.warmup = FilmWarmup(self.model.film, self.film_fit_films)

    def _coreset(self) -> StreamingCoreset | GlobalCoreset:
        if self.coreset is None:
            self.coreset = make_coreset(self.coreset_sampling_ratio, self.coreset_chunk_size, seed=self.coreset_seed)
        return self.coreset

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._start_bank()  # a second epoch or a re-fit starts a fresh bank

    def _drain(self) -> None:
        """Move the embeddings anomalib's forward stored (and their films' metadata) into the coreset stream."""
        if not self.model.embedding_store:
            return
        embedding = torch.vstack(self.model.embedding_store)
        self.model.embedding_store.clear()
        metadata = self.pop_train_metadata()
        self._add(self.warmup.push(self._maps(embedding, len(metadata)), metadata))

    def fit(self) -> None:
        self._drain()
        self._add(self.warmup.release())  # fewer training films than film_fit_films
        try:
            shard_bank = self._coreset().finalize()
        except ValueError as error:
            msg = "PatchCore saw no training films: the memory bank is empty; check the train split"
            raise ValueError(msg) from error
        # Under DDP: the union of the ranks' coresets, in rank order, identical on every rank. Each is already at
        # the sampling ratio of its own shard, so the union keeps ratio * (all patches), the single-device budget,
        # and needs no further reduction. Without a process group this is the shard's (the whole set's) coreset.
        bank = gather_rows(shard_bank)
        log.info("coreset: %d patch embeddings kept (%d ranks)", len(bank), world_size())
        self.model.memory_bank = bank.to(self.device).contiguous()

    def _maps(self, embedding: torch.Tensor, n_films: int) -> torch.Tensor:
        height, width = self.model.grid
        return embedding.reshape(n_films, height, width, -1).permute(0, 3, 1, 2)

    def _add(self, maps: torch.Tensor | None) -> None:
        if maps is not None:
            self._coreset().add(maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1]))


def validate_patchcore(cfg: DictConfig) -> None:
    """Odd aggregation patch, a sampling ratio in (0, 1], a known nearest-neighbour search."""
    check_odd_patch(cfg)
    detector = cfg.model.detector
    if not 0 < detector.coreset_sampling_ratio <= 1:
        msg = f"model.detector.coreset_sampling_ratio={detector.coreset_sampling_ratio} must be in (0, 1]"
        raise ValueError(msg)
    if detector.get("search", "exact") not in SEARCH_METHODS:
        msg = f"model.detector.search={detector.search} is unknown; choose from {list(SEARCH_METHODS)}"
        raise ValueError(msg)


@register_model("patchcore", film=True, multi_device=True, validate=validate_patchcore)
def build_patchcore(
    backbone: BackboneConfig,
    image_size: int,
    coreset_sampling_ratio: float = 0.1,
    num_neighbors: int = 9,
    patch_size: int = 3,
    patch_stride: int = 1,
    coreset_chunk_size: int | None = 16_384,
    search: str = "exact",
    search_nprobe: int = 8,
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
        film=conditioning if conditions_features(conditioning) else None,
        pre_processor=pre_processor(image_size, backbone),
        **NO_ANOMALIB_POSTPROCESSING,
    )
    load_pretrained(model.model.feature_extractor.feature_extractor, backbone)
    model.model.feature_extractor = LocalAggregation(model.model.feature_extractor, patch_size, patch_stride)
    model.model.feature_pooler = nn.Identity()
    model.model.search_method, model.model.search_nprobe = search, search_nprobe
    return model
