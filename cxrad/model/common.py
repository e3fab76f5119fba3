"""Pieces every detector builder shares."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
from anomalib.pre_processing import PreProcessor
from omegaconf import DictConfig
from torch import nn
from torchvision.transforms.v2 import Compose, Normalize, Resize

from cxrad.backbone import BackboneConfig, load_pretrained
from cxrad.data.metadata import covariate_columns
from cxrad.metadata_conditioning import MLPFiLM, NormativeFiLM
from cxrad.metadata_conditioning.options import conditions_features

M = TypeVar("M", bound=nn.Module)

# Flags passed to every anomalib model: cxrad computes thresholds, metrics and plots on raw scores.
NO_ANOMALIB_POSTPROCESSING = {"post_processor": False, "evaluator": False, "visualizer": False}


def pre_processor(image_size: int, backbone: BackboneConfig | None) -> PreProcessor:
    """Resize (a no-op for films already at ``image_size``) and, for ImageNet backbones, normalise."""
    steps = [Resize((image_size, image_size), antialias=True)]
    if backbone is not None:
        steps.append(Normalize(mean=list(backbone.mean), std=list(backbone.std)))
    return PreProcessor(transform=Compose(steps))


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global RNG for a model's construction (random weights, channel draws), restoring it after."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


def anomalib_detector(
    cls: type[M],
    backbone: BackboneConfig,
    image_size: int,
    seed: int,
    extractor: Callable[[M], nn.Module],
    /,
    **kwargs: object,
) -> M:
    """``cls(**kwargs)`` built under ``seed`` with cxrad's pre-processor and no anomalib post-processing, then the
    backbone's weights loaded into ``extractor(model)`` (the timm feature network anomalib built without them).

    The first five arguments are positional-only: anomalib's classes take a ``backbone`` (timm name) of their own.
    """
    with seeded(seed):
        model = cls(pre_processor=pre_processor(image_size, backbone), **NO_ANOMALIB_POSTPROCESSING, **kwargs)
    load_pretrained(extractor(model), backbone)
    return model


def rebuilt_as(network: nn.Module, cls: type[nn.Module], **kwargs: object) -> nn.Module:
    """A ``cls(**kwargs)`` network holding ``network``'s weights and buffers (e.g. PaDiM's channel draw).

    anomalib's modules build their own network class in ``__init__``; cxrad's subclasses of those networks add
    hooks (FiLM, search) and are built here with the same arguments, then take the built network's state, so the
    result equals anomalib's network plus the hooks. The second construction leaves torch's RNG untouched.
    """
    with torch.random.fork_rng():
        rebuilt = cls(**kwargs)
    rebuilt.load_state_dict(network.state_dict())
    return rebuilt


def check_odd_patch(cfg: DictConfig) -> None:
    """Local aggregation needs an odd ``model.detector.patch_size`` so maps stay aligned with the film."""
    if cfg.model.detector.patch_size % 2 == 0:
        msg = f"model.detector.patch_size={cfg.model.detector.patch_size} must be odd (keeps maps aligned)"
        raise ValueError(msg)


def build_normative_film(conditioning: dict | None) -> NormativeFiLM | None:
    """The closed-form FiLM of memory-bank models, or None for other conditioning options."""
    if not conditions_features(conditioning):
        return None
    columns = covariate_columns(conditioning.get("covariates"))
    return NormativeFiLM(
        metadata_dim=len(columns),
        prior_count=conditioning.get("prior_count", 5.0),
        min_std_ratio=conditioning.get("min_std_ratio", 0.2),
        scale=conditioning.get("scale", True),
        per_position=conditioning.get("per_position", False),
        columns=columns,
    )


def build_mlp_film(conditioning: dict, channels: int) -> MLPFiLM:
    """The end-to-end trained FiLM of FastFlow and DRAEM (identity at initialisation)."""
    columns = covariate_columns(conditioning.get("covariates"))
    hidden = int(conditioning.get("hidden", 64))
    return MLPFiLM(metadata_dim=len(columns), channels=channels, hidden=hidden, columns=columns)
