"""Pieces every detector builder shares."""

from __future__ import annotations

from anomalib.pre_processing import PreProcessor
from torchvision.transforms.v2 import Compose, Normalize, Resize

from cxrad.backbone import BackboneConfig

# Flags passed to every anomalib model: cxrad computes thresholds, metrics and plots on raw scores.
NO_ANOMALIB_POSTPROCESSING = {"post_processor": False, "evaluator": False, "visualizer": False}


def pre_processor(image_size: int, backbone: BackboneConfig | None) -> PreProcessor:
    """Resize (a no-op for films already at ``image_size``) and, for ImageNet backbones, normalise."""
    steps = [Resize((image_size, image_size), antialias=True)]
    if backbone is not None:
        steps.append(Normalize(mean=list(backbone.mean), std=list(backbone.std)))
    return PreProcessor(transform=Compose(steps))
