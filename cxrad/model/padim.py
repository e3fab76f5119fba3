"""PaDiM with configurable local aggregation before the per-position Gaussians."""

from __future__ import annotations

from anomalib.models import Padim

from cxrad.backbone import BackboneConfig, load_pretrained, validate_layers
from cxrad.model.common import NO_ANOMALIB_POSTPROCESSING, pre_processor
from cxrad.model.components.aggregation import LocalAggregation


def build_padim(
    backbone: BackboneConfig,
    image_size: int,
    n_features: int = 100,
    patch_size: int = 1,
    patch_stride: int = 1,
    seed: int = 0,
) -> Padim:
    """PaDiM on ``backbone.layers['padim']``; ``n_features`` random channels are kept (seeded)."""
    import torch

    layers = backbone.layers_for("padim")
    validate_layers(backbone.timm_name, layers)
    # PaDiM draws its channel subset with the global RNG at construction; fork it so that draw is seeded
    # and nothing outside changes.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Padim(
            backbone=backbone.timm_name,
            layers=layers,
            pre_trained=False,
            n_features=n_features,
            pre_processor=pre_processor(image_size, backbone),
            **NO_ANOMALIB_POSTPROCESSING,
        )
    load_pretrained(model.model.feature_extractor.feature_extractor, backbone)
    model.model.feature_extractor = LocalAggregation(model.model.feature_extractor, patch_size, patch_stride)
    return model
