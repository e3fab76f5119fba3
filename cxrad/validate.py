"""One early check of the composed config: invalid combinations fail before any data or model is built."""

from __future__ import annotations

from omegaconf import DictConfig

from cxrad.aggregation import AggregationConfig
from cxrad.backbone import validate_layers
from cxrad.config_errors import ConfigError, check_missing, check_paths
from cxrad.metadata_conditioning.normative import map_pool, map_settings
from cxrad.metadata_conditioning.options import check_option, conditions_features, conditions_maps
from cxrad.model.registry import ModelSpec, film_models, model_spec, registered_models
from cxrad.preprocessing.roi import check_roi_method
from cxrad.threshold.fit import METHODS as THRESHOLD_METHODS


def _fail(message: str) -> None:
    raise ConfigError(message)


def validate(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` (a ``ValueError``) naming the bad value and the fix for any unsupported combination."""
    check_missing(cfg)  # a mandatory ``???`` key first: everything below may read it
    check_paths(cfg)
    spec = model_spec(cfg.model.name)  # raises naming the registered models
    if spec.layers is not None:
        _validate_layers(spec, cfg.backbone)
    if cfg.get("devices", 1) > 1 and not spec.multi_device:
        wired = [name for name in registered_models() if model_spec(name).multi_device]
        _fail(
            f"devices={cfg.devices} (a multi-device fit) is wired for model in {wired}; "
            f"add model={wired[-1]} or use devices=1"
        )
    check_option(cfg.metadata_conditioning)  # raises naming the unknown part and the choices
    if conditions_maps(cfg.metadata_conditioning):
        map_pool(cfg.metadata_conditioning)  # these raise naming the choices
        map_settings(cfg.metadata_conditioning)
    if conditions_features(cfg.metadata_conditioning) and not spec.film:
        _fail(
            f"metadata_conditioning={cfg.metadata_conditioning.name} is not available for model={spec.name}; use "
            f"metadata_conditioning=normative (or none/stratified), or add model=patchcore "
            f"(FiLM models: {film_models()})"
        )
    if cfg.threshold.method not in THRESHOLD_METHODS:
        _fail(f"threshold={cfg.threshold.method} is unknown; choose from {THRESHOLD_METHODS}")
    AggregationConfig.from_config(cfg.get("aggregation"))  # raises naming the bad name or parameter
    check_roi_method(cfg.preprocessing.get("roi", "none"))  # learned segmenters: names the missing weights
    if not 0 < cfg.data.split.val_fraction < 1:  # the threshold and the conditioning reference need val films
        _fail(f"data.split.val_fraction={cfg.data.split.val_fraction} must be in (0, 1), e.g. 0.15")
    if cfg.model.max_epochs < 1:
        _fail(f"model.max_epochs={cfg.model.max_epochs} must be >= 1")
    if spec.validate is not None:  # the model's own rules (cxrad/model/<name>.py), after the rules of all models
        spec.validate(cfg)


def _validate_layers(spec: ModelSpec, backbone: DictConfig) -> None:
    """The backbone names real timm feature layers for the model (anomalib would only warn and drop them)."""
    if spec.layers not in backbone.layers:
        _fail(
            f"backbone={backbone.name} defines no feature layers for model={spec.name}; add "
            f"backbone.layers.{spec.layers} to conf/backbone/{backbone.name}.yaml or choose another backbone"
        )
    validate_layers(backbone.timm_name, list(backbone.layers[spec.layers]))
