"""What a ``metadata_conditioning`` option is: a FiLM inside the detector and/or a registered score conditioner.

An option's config names its parts: ``features: film`` puts a FiLM on the detector's features (the detector
builders read it), ``scorer: <name>`` re-scores the detector's output against reference films with the
:class:`ScoreConditioner` registered under that name. ``film_normative`` is both: FiLM on the features and the
normative standardisation of the anomaly map. A new option is one config; a new way of re-scoring is one module
under ``cxrad/metadata_conditioning/`` that registers a conditioner (discovered on import) plus its config.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# The options cxrad ships (each a config in conf/metadata_conditioning/); configs saved before the ``features``
# and ``scorer`` keys existed are read by name through this table.
SHIPPED = {
    "none": (None, None),
    "stratified": (None, "stratified"),
    "film": ("film", None),
    "normative": (None, "normative"),
    "film_normative": ("film", "normative"),
    "film_stratified": ("film", "stratified"),
}
OPTIONS = tuple(SHIPPED)
FEATURES = ("film",)


@dataclass
class Films:
    """What a score conditioner sees of some films: indices, raw scores, metadata rows, pooled maps if kept."""

    index: list[int]
    raw: pd.Series
    frame: pd.DataFrame  # ``age``, ``sex``, ``view`` (and ``val_role``) of the films, indexed like ``raw``
    maps: np.ndarray | None = None  # (N, grid, grid) pooled anomaly maps, for conditioners that need them
    metadata: np.ndarray | None = None  # (N, M) encoded metadata as the batches carried it
    extra: dict = field(default_factory=dict)


class ScoreConditioner(Protocol):
    """Re-scores films from a detector's output, fitted on normal reference films.

    ``fit`` sees the reference films only; ``score`` is applied alike to the calibration, selection and test
    films (and to new films by ``cxrad.predict``), so a threshold set on calibration films holds on test films.
    ``save`` writes what ``load`` needs to rebuild the fitted conditioner from a run directory.
    """

    needs_maps: ClassVar[bool]  # whether it reads the films' pooled anomaly maps

    @classmethod
    def from_config(cls, conditioning: Mapping[str, object]) -> ScoreConditioner: ...

    def fit(self, reference: Films) -> ScoreConditioner: ...

    def score(self, films: Films) -> pd.Series: ...

    def conditioned_maps(self, films: Films) -> dict[int, np.ndarray] | None:
        """The maps whose maximum is the score (for localization and heatmaps), or None."""
        ...

    def save(self, run_dir: Path, reference: Films) -> None: ...

    @classmethod
    def load(cls, run_dir: Path, conditioning: Mapping[str, object]) -> ScoreConditioner: ...


SCORERS: dict[str, type[ScoreConditioner]] = {}


def register_scorer(name: str):  # noqa: ANN201 - a class decorator
    """Register a :class:`ScoreConditioner` class under ``name`` (the value of ``metadata_conditioning.scorer``)."""

    def add(cls: type[ScoreConditioner]) -> type[ScoreConditioner]:
        SCORERS[name] = cls
        return cls

    return add


def _discover() -> None:
    """Import every module of this package once, so each registers its conditioners."""
    package = importlib.import_module("cxrad.metadata_conditioning")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"cxrad.metadata_conditioning.{module.name}")


def parts(conditioning: Mapping[str, object] | None) -> tuple[str | None, str | None]:
    """``(features, scorer)`` of an option config (by name for configs saved before the keys existed)."""
    if not conditioning:
        return None, None
    name = str(conditioning.get("name"))
    if "features" in conditioning or "scorer" in conditioning:
        return conditioning.get("features"), conditioning.get("scorer")
    if name not in SHIPPED:
        msg = (
            f"metadata_conditioning={name} is unknown; choose from {list(OPTIONS)} or give its config "
            "'features: film|null' and 'scorer: <a registered scorer>|null'"
        )
        raise ValueError(msg)
    return SHIPPED[name]


def scorer_class(conditioning: Mapping[str, object] | None) -> type[ScoreConditioner] | None:
    """The registered conditioner of the option, None when it re-scores nothing.

    Raises:
        ValueError: naming the scorer and the registered ones when it is unknown.
    """
    name = parts(conditioning)[1]
    if name is None:
        return None
    if name not in SCORERS:
        _discover()
    if name not in SCORERS:
        msg = f"metadata_conditioning.scorer={name} is unknown; choose from {sorted(SCORERS)} or null"
        raise ValueError(msg)
    return SCORERS[name]


def check_option(conditioning: Mapping[str, object]) -> None:
    """Raise ``ValueError`` with the fix for an option whose parts are unknown."""
    features, _ = parts(conditioning)
    if features is not None and features not in FEATURES:
        msg = f"metadata_conditioning.features={features} is unknown; choose from {list(FEATURES)} or null"
        raise ValueError(msg)
    scorer_class(conditioning)


def conditions_features(conditioning: Mapping[str, object] | None) -> bool:
    """Whether the option puts a FiLM on the model's features."""
    return parts(conditioning)[0] == "film"


def conditions_maps(conditioning: Mapping[str, object] | None) -> bool:
    """Whether the option re-scores films from their anomaly maps (the run keeps pooled maps for it)."""
    scorer = scorer_class(conditioning)
    return scorer is not None and scorer.needs_maps


def calibrates_scores(conditioning: Mapping[str, object] | None) -> bool:
    """Whether the option re-scores the films' image scores (without their maps) against reference films."""
    scorer = scorer_class(conditioning)
    return scorer is not None and not scorer.needs_maps


def rescores(conditioning: Mapping[str, object] | None) -> bool:
    """Whether the option fits a conditioner on reference films (so the threshold is set in its units)."""
    return scorer_class(conditioning) is not None
