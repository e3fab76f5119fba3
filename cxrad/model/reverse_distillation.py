"""Reverse Distillation (RD4AD): a frozen pretrained ResNet encoder, a trainable one-class bottleneck and a
reverse ResNet decoder that reconstructs the encoder's features on ``backbone.layers.reverse_distillation``;
the anomaly map is their per-level cosine distance.

anomalib 2.7's decoder exists for ResNets only (resnet18/34/50/101/152, resnext, wide_resnet50_2/101_2), so
``validate`` refuses EfficientNets. Encoder weights come from :func:`cxrad.backbone.load_pretrained`; loss,
optimiser and trainer arguments are anomalib's. No FiLM: use ``metadata_conditioning=normative``.
"""

from __future__ import annotations

from anomalib.models import ReverseDistillation
from omegaconf import DictConfig

from cxrad.backbone import BackboneConfig
from cxrad.model.common import anomalib_detector
from cxrad.model.conditioning import MetadataSteps
from cxrad.model.registry import register_model

# The backbones anomalib 2.7 has a reverse (decoder) network for (anomalib.models.components.backbone).
DECODERS = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "wide_resnet50_2",
    "wide_resnet101_2",
)
LAYERS = ["layer1", "layer2", "layer3"]  # the decoder mirrors exactly these three levels


class CxrReverseDistillation(MetadataSteps, ReverseDistillation):
    """anomalib's Reverse Distillation with metadata in its evaluation steps (built with ``pre_trained=False``)."""


def validate_reverse_distillation(cfg: DictConfig) -> None:
    """A ResNet backbone anomalib has a decoder for, on exactly ``layer1..3``, at a size divisible by 32."""
    timm_name = cfg.backbone.timm_name
    if timm_name not in DECODERS:
        msg = (
            f"model=reverse_distillation has no decoder for backbone={cfg.backbone.name} ({timm_name}); use "
            f"backbone=resnet18 or backbone=wide_resnet50_2"
        )
        raise ValueError(msg)
    layers = list(cfg.backbone.layers.reverse_distillation)
    if layers != LAYERS:
        msg = f"backbone.layers.reverse_distillation={layers} must be {LAYERS} (the decoder mirrors them)"
        raise ValueError(msg)
    size = cfg.preprocessing.image_size
    if size % 32:
        msg = f"model=reverse_distillation needs preprocessing.image_size divisible by 32, got {size}"
        raise ValueError(msg)


@register_model("reverse_distillation", validate=validate_reverse_distillation)
def build_reverse_distillation(
    backbone: BackboneConfig,
    image_size: int,
    anomaly_map_mode: str = "add",
    seed: int = 0,
    conditioning: dict | None = None,
) -> CxrReverseDistillation:
    """Reverse Distillation on ``backbone.layers.reverse_distillation``; ``anomaly_map_mode``: add | multiply."""
    del conditioning  # FiLM is refused by validate (registered without film)
    return anomalib_detector(
        CxrReverseDistillation,
        backbone,
        image_size,
        seed,
        lambda model: model.model.encoder.feature_extractor,
        backbone=backbone.timm_name,
        layers=backbone.layers_for("reverse_distillation"),
        anomaly_map_mode=anomaly_map_mode,
        pre_trained=False,
    )
