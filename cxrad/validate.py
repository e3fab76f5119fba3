"""One early check of the composed config: invalid combinations fail before any data or model is built."""

from __future__ import annotations

from omegaconf import DictConfig

from cxrad.aggregation import AggregationConfig
from cxrad.backbone import validate_layers
from cxrad.config_errors import ConfigError, check_missing, check_paths
from cxrad.metadata_conditioning.normative import map_pool, map_settings
from cxrad.metadata_conditioning.options import check_option, conditions_features, conditions_maps
from cxrad.model.components.knn import SEARCH_METHODS
from cxrad.preprocessing.roi import check_roi_method
from cxrad.threshold.fit import METHODS as THRESHOLD_METHODS

FILM_MODELS = ("patchcore", "padim", "draem", "fastflow")


def _fail(message: str) -> None:
    raise ConfigError(message)


def validate(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` (a ``ValueError``) naming the bad value and the fix for any unsupported combination."""
    check_missing(cfg)  # a mandatory ``???`` key first: everything below may read it
    check_paths(cfg)
    model, backbone, size = cfg.model.name, cfg.backbone, cfg.preprocessing.image_size
    if model == "fastflow":
        _validate_fastflow(backbone, size)
    if model in ("patchcore", "padim"):
        validate_layers(backbone.timm_name, list(backbone.layers[model]))
        if cfg.model.detector.patch_size % 2 == 0:
            _fail(f"model.detector.patch_size={cfg.model.detector.patch_size} must be odd (keeps maps aligned)")
    if model == "patchcore" and not 0 < cfg.model.detector.coreset_sampling_ratio <= 1:
        _fail(f"model.detector.coreset_sampling_ratio={cfg.model.detector.coreset_sampling_ratio} must be in (0, 1]")
    if model == "patchcore" and cfg.model.detector.get("search", "exact") not in SEARCH_METHODS:
        _fail(f"model.detector.search={cfg.model.detector.search} is unknown; choose from {list(SEARCH_METHODS)}")
    if cfg.get("devices", 1) > 1 and model not in ("patchcore", "padim"):
        _fail(f"devices={cfg.devices} (a multi-device fit) is wired for model=patchcore and model=padim; use devices=1")
    check_option(cfg.metadata_conditioning)  # raises naming the unknown part and the choices
    if conditions_maps(cfg.metadata_conditioning):
        map_pool(cfg.metadata_conditioning)  # these raise naming the choices
        map_settings(cfg.metadata_conditioning)
    if conditions_features(cfg.metadata_conditioning) and model not in FILM_MODELS:
        _fail(f"metadata_conditioning=film is not available for model={model} yet; use one of {FILM_MODELS}")
    if cfg.threshold.method not in THRESHOLD_METHODS:
        _fail(f"threshold={cfg.threshold.method} is unknown; choose from {THRESHOLD_METHODS}")
    AggregationConfig.from_config(cfg.get("aggregation"))  # raises naming the bad name or parameter
    check_roi_method(cfg.preprocessing.get("roi", "none"))  # learned segmenters: names the missing weights
    if not 0 < cfg.data.split.val_fraction < 1:  # the threshold and the conditioning reference need val films
        _fail(f"data.split.val_fraction={cfg.data.split.val_fraction} must be in (0, 1), e.g. 0.15")
    if cfg.model.max_epochs < 1:
        _fail(f"model.max_epochs={cfg.model.max_epochs} must be >= 1")


def _validate_fastflow(backbone: DictConfig, size: int) -> None:
    """FastFlow runs on any timm CNN whose feature levels are named in ``backbone.layers.fastflow``."""
    if "fastflow" not in backbone.layers:
        _fail(
            f"backbone={backbone.name} defines no feature layers for model=fastflow; add "
            f"backbone.layers.fastflow (three levels at strides 4/8/16, e.g. [layer1, layer2, layer3] for ResNets, "
            f"[blocks.1, blocks.2, blocks.4] for EfficientNets)"
        )
    validate_layers(backbone.timm_name, list(backbone.layers.fastflow))
    if size % 32:
        _fail(f"model=fastflow needs preprocessing.image_size divisible by 32, got {size}; try {size // 32 * 32}")
