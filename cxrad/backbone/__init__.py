"""Backbones: timm models with validated feature layers and explicit, never-silent weight loading."""

from cxrad.backbone.weights import (
    BackboneConfig,
    BackboneWeightsError,
    load_pretrained,
    validate_layers,
    weights_origin,
)

__all__ = ["BackboneConfig", "BackboneWeightsError", "load_pretrained", "validate_layers", "weights_origin"]
