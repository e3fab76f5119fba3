"""FastFlow (normalising flow on backbone features), depth set by ``flow_steps``."""

from __future__ import annotations

from anomalib.models import Fastflow

from cxrad.backbone import BackboneConfig, load_pretrained
from cxrad.model.common import NO_ANOMALIB_POSTPROCESSING, pre_processor

# The only backbones anomalib 2.7's FastflowModel accepts (it raises on others deep inside __init__).
FASTFLOW_BACKBONES = ("resnet18", "wide_resnet50_2", "cait_m48_448", "deit_base_distilled_patch16_384")


def build_fastflow(
    backbone: BackboneConfig,
    image_size: int,
    flow_steps: int = 8,
    hidden_ratio: float = 1.0,
    conv3x3_only: bool = False,
    seed: int = 0,
    conditioning: dict | None = None,
) -> Fastflow:
    """FastFlow on a ResNet backbone; ``image_size`` must be a multiple of 32 (checked by ``validate``)."""
    import torch

    if backbone.timm_name not in FASTFLOW_BACKBONES:
        msg = f"FastFlow (anomalib 2.7) accepts backbones {FASTFLOW_BACKBONES}, not {backbone.name}"
        raise ValueError(msg)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Fastflow(
            backbone=backbone.timm_name,
            pre_trained=False,
            flow_steps=flow_steps,
            hidden_ratio=hidden_ratio,
            conv3x3_only=conv3x3_only,
            pre_processor=pre_processor(image_size, backbone),
            **NO_ANOMALIB_POSTPROCESSING,
        )
    load_pretrained(model.model.feature_extractor, backbone)
    return model
