"""One early check of the composed config: invalid combinations fail before any data or model is built."""

from __future__ import annotations

from omegaconf import DictConfig

from cxrad.backbone import validate_layers
from cxrad.model import FASTFLOW_BACKBONES
from cxrad.model.fastflow import FASTFLOW_FILM_BACKBONES
from cxrad.threshold.fit import METHODS as THRESHOLD_METHODS

CONDITIONING = ("none", "stratified", "film", "normative")
FILM_MODELS = ("patchcore", "padim", "draem", "fastflow")


def _fail(message: str) -> None:
    raise ValueError(message)


def validate(cfg: DictConfig) -> None:
    """Raise ``ValueError`` naming the bad value and the fix for any unsupported combination."""
    model, backbone, size = cfg.model.name, cfg.backbone, cfg.preprocessing.image_size
    if model == "fastflow" and backbone.timm_name not in FASTFLOW_BACKBONES:
        _fail(
            f"model=fastflow does not accept backbone={backbone.name}: anomalib 2.7's FastFlow takes only "
            f"{list(FASTFLOW_BACKBONES)}. Use backbone=resnet18 or backbone=wide_resnet50_2."
        )
    if model == "fastflow" and size % 32:
        _fail(f"model=fastflow needs preprocessing.image_size divisible by 32, got {size}; try {size // 32 * 32}")
    if model in ("patchcore", "padim"):
        validate_layers(backbone.timm_name, list(backbone.layers[model]))
        if cfg.model.detector.patch_size % 2 == 0:
            _fail(f"model.detector.patch_size={cfg.model.detector.patch_size} must be odd (keeps maps aligned)")
    if model == "patchcore" and not 0 < cfg.model.detector.coreset_sampling_ratio <= 1:
        _fail(f"model.detector.coreset_sampling_ratio={cfg.model.detector.coreset_sampling_ratio} must be in (0, 1]")
    if cfg.metadata_conditioning.name not in CONDITIONING:
        _fail(f"metadata_conditioning={cfg.metadata_conditioning.name} is unknown; choose from {CONDITIONING}")
    if cfg.metadata_conditioning.name == "film" and model not in FILM_MODELS:
        _fail(f"metadata_conditioning=film is not available for model={model} yet; use one of {FILM_MODELS}")
    if (
        cfg.metadata_conditioning.name == "film"
        and model == "fastflow"
        and backbone.timm_name not in FASTFLOW_FILM_BACKBONES
    ):
        _fail(
            f"model=fastflow metadata_conditioning=film needs a CNN backbone {list(FASTFLOW_FILM_BACKBONES)}, "
            f"not backbone={backbone.name}"
        )
    if cfg.threshold.method not in THRESHOLD_METHODS:
        _fail(f"threshold={cfg.threshold.method} is unknown; choose from {THRESHOLD_METHODS}")
    if cfg.model.max_epochs < 1:
        _fail(f"model.max_epochs={cfg.model.max_epochs} must be >= 1")
