"""PatchCore with configurable local aggregation and a fast greedy coreset."""

from __future__ import annotations

import logging

import torch
from anomalib.models import Patchcore
from torch import nn

from cxrad.backbone import BackboneConfig, load_pretrained, validate_layers
from cxrad.model.common import NO_ANOMALIB_POSTPROCESSING, pre_processor
from cxrad.model.components.aggregation import LocalAggregation
from cxrad.model.components.coreset import k_center_greedy

log = logging.getLogger(__name__)


class CxrPatchcore(Patchcore):
    """anomalib PatchCore whose memory bank is subsampled by :func:`k_center_greedy`."""

    def __init__(self, *args: object, coreset_seed: int = 0, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.coreset_seed = coreset_seed

    def fit(self) -> None:
        store = self.model.embedding_store
        if not store:
            msg = "PatchCore saw no training films: the embedding store is empty; check the train split"
            raise ValueError(msg)
        bank = torch.vstack(store)
        store.clear()
        n_select = max(1, int(len(bank) * self.coreset_sampling_ratio))
        log.info("coreset: %d of %d patch embeddings", n_select, len(bank))
        index = k_center_greedy(bank, n_select, seed=self.coreset_seed)
        self.model.memory_bank = bank[index].contiguous()


def build_patchcore(
    backbone: BackboneConfig,
    image_size: int,
    coreset_sampling_ratio: float = 0.01,
    num_neighbors: int = 9,
    patch_size: int = 3,
    patch_stride: int = 1,
    seed: int = 0,
) -> CxrPatchcore:
    """PatchCore on ``backbone.layers['patchcore']`` with ``patch_size``/``patch_stride`` aggregation."""
    layers = backbone.layers_for("patchcore")
    validate_layers(backbone.timm_name, layers)
    model = CxrPatchcore(
        backbone=backbone.timm_name,
        layers=layers,
        pre_trained=False,
        coreset_sampling_ratio=coreset_sampling_ratio,
        num_neighbors=num_neighbors,
        pre_processor=pre_processor(image_size, backbone),
        coreset_seed=seed,
        **NO_ANOMALIB_POSTPROCESSING,
    )
    load_pretrained(model.model.feature_extractor.feature_extractor, backbone)
    model.model.feature_extractor = LocalAggregation(model.model.feature_extractor, patch_size, patch_stride)
    model.model.feature_pooler = nn.Identity()
    return model
