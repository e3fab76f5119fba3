"""The detectors cxrad knows: one :class:`ModelSpec` per ``conf/model/<name>.yaml``, registered by its module.

A detector is one module ``cxrad/model/<name>.py`` whose builder carries ``@register_model("<name>", ...)``,
plus its config ``conf/model/<name>.yaml`` (``name: <name>``, ``max_epochs``, and ``detector:`` a partial of
the builder). Every module of ``cxrad.model`` is imported on the first lookup, so nothing else is edited to
add one. The interface is four names:

- :func:`register_model` (decorator on the builder) records what the rest of cxrad asks of a model: whether it
  reads a backbone and which ``backbone.layers.<key>``, whether it takes FiLM feature conditioning
  (``metadata_conditioning=film*``), whether it fits over several devices, and an optional ``validate(cfg)``
  for its own combination rules (raise ``ValueError`` naming the bad value and the fix), and an optional
  ``fit`` procedure of its own instead of ``Engine.fit`` (the ensemble fits its members) with the ``load`` that
  rebuilds such a run;
- :func:`model_spec` returns a name's :class:`ModelSpec` (one-line error listing the registered names);
- :func:`registered_models` lists the names;
- :class:`ModelSpec` is what is stored.

The builder is called by :func:`cxrad.model.factory.build_detector` as
``builder(backbone=BackboneConfig | None, image_size=int, seed=int, conditioning=dict, **cfg.model.detector)``
(``backbone`` is None for models registered with ``uses_backbone=False``) and returns an ``AnomalibModule``
whose predictions carry ``pred_score`` and ``anomaly_map``.

Example:
    >>> @register_model("toy_doc", uses_backbone=False)
    ... def build_toy(image_size: int, seed: int = 0, conditioning: dict | None = None, backbone: None = None):
    ...     ...
    >>> model_spec("toy_doc").uses_backbone
    False
    >>> del MODELS["toy_doc"]
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

Builder = Callable[..., object]
ConfigCheck = Callable[[DictConfig], None]
Fit = Callable[..., dict]
Load = Callable[[DictConfig, Path], object]


@dataclass(frozen=True)
class ModelSpec:
    """What cxrad knows about one registered detector.

    Args:
        name: the CLI choice (``model=<name>``, ``conf/model/<name>.yaml``).
        build: the builder (see the module docstring for its call).
        uses_backbone: whether it reads a timm backbone (DRAEM does not: runs then report ``backbone: none``).
        film: whether it takes FiLM feature conditioning (``metadata_conditioning=film*``).
        layers: the ``backbone.layers.<key>`` it reads (checked to exist and to be real timm layers), or None.
        multi_device: whether its fit is wired for ``devices > 1`` (Lightning DDP).
        validate: its own combination rules on the composed config, or None.
        fit: its own fit procedure, or None for ``Engine.fit`` (:func:`cxrad.model.checkpoint.fit_or_resume`).
            Called as ``fit(cfg, model, loaders, samples, out_dir)`` and returning the run's fit facts
            (``fit_seconds``, ``resumed_from``); ``model=ensemble`` fits its members with it. Such a model reads
            no backbone layers itself (``layers`` is None): its ``validate`` checks its parts.
        load: with ``fit``, how a finished run's detector is rebuilt for ``cxrad.predict`` / ``cxrad.heatmap``:
            ``load(cfg, run_dir)`` returns the model in eval mode (``cfg`` as :func:`cxrad.trained_run.load_run_config`
            reads it). Models fitted by ``Engine.fit`` are rebuilt from their checkpoint and need none.
    """

    name: str
    build: Builder
    uses_backbone: bool = True
    film: bool = False
    layers: str | None = None
    multi_device: bool = False
    validate: ConfigCheck | None = None
    fit: Fit | None = None
    load: Load | None = None


MODELS: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    uses_backbone: bool = True,
    film: bool = False,
    layers: str | None = None,
    multi_device: bool = False,
    validate: ConfigCheck | None = None,
    fit: Fit | None = None,
    load: Load | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator registering a builder under ``name``; ``layers`` defaults to ``name`` for backbone models.

    Raises:
        ValueError: when ``name`` is already registered by another builder.
    """

    def add(build: Builder) -> Builder:
        known = MODELS.get(name)
        if known is not None and _origin(known.build) != _origin(build):  # re-importing a module is fine
            msg = f"model {name} is registered twice ({known.build.__module__} and {build.__module__}); rename one"
            raise ValueError(msg)
        key = (layers or name) if uses_backbone and fit is None else None
        MODELS[name] = ModelSpec(name, build, uses_backbone, film, key, multi_device, validate, fit, load)
        return build

    return add


def _origin(build: Builder) -> tuple[str, str]:
    return build.__module__, build.__qualname__


def _discover() -> None:
    """Import every module of ``cxrad.model`` once, so each registers its builder."""
    package = importlib.import_module("cxrad.model")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"cxrad.model.{module.name}")


def registered_models() -> list[str]:
    """Every registered model name, sorted."""
    _discover()
    return sorted(MODELS)


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``.

    Raises:
        ValueError: naming the unknown model and listing the registered ones.
    """
    if name not in MODELS:
        _discover()
    if name not in MODELS:
        msg = f"model={name} is unknown; choose from {sorted(MODELS)} (or add cxrad/model/{name}.py + its config)"
        raise ValueError(msg)
    return MODELS[name]


def film_models() -> list[str]:
    """The registered models that take FiLM feature conditioning."""
    return [name for name in registered_models() if MODELS[name].film]
