"""Normative conditioning of the anomaly map: FiLM on the detector's output instead of its input features.

Each film's anomaly map is pooled to a coarse ``grid x grid`` map (max-pooled by default: a lesion smaller than
a cell keeps its peak instead of being averaged away with the normal tissue around it) and standardised against
what normal films *with the same metadata* show at each position: ``z(p) = (a(p) - mu(m, p)) / (sigma(m) * r(p))``,
where ``mu`` and ``sigma`` are ridge regressions on the encoded metadata (the same estimator as
:class:`NormativeFiLM`, on a one-channel map) and ``r(p)`` is how much more or less normal films vary at position
``p`` than on average (``position_spread``; without it, the positions where normal films vary most, such as the
borders, decide every film's maximum). The film's score is the maximum of ``z``. Unlike per-group score
calibration this changes the ranking inside a group: positions where normal AP films are always anomalous (noisy
borders, the larger heart) stop dominating AP films' scores, so the maximum moves to what is unusual *for this
patient's metadata*.

``map_units: detector`` keeps the detector's own units instead: the FiLM moves each film's map to what a film of
the population's average metadata would show, ``y(p) = mu_bar(p) + sigma_bar / sigma(m) * (a(p) - mu(m, p))``,
and the score is the maximum of ``y``. What the metadata explains is removed as with ``z``, but positions keep
the detector's own weighting: a lesion where normal films vary a lot (the heart border) is not shrunk by that
spread, and a faint one where they barely vary is not magnified by it.

The regressions are fitted on the *reference* part of the normal validation films; the *calibration* part, the
abnormal validation films and the test films are all scored by that one fitted model, so the threshold set on the
calibration films is not set on in-sample (too small) values (see :mod:`cxrad.metadata_conditioning.reference`).
The run saves the reference films' pooled maps and metadata (:data:`REFERENCE_FILE`), so ``cxrad.predict`` and
``cxrad.heatmap`` refit the same regressions and score new films exactly as the run scored its test films.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback

from cxrad.data.metadata import COVARIATES, UNKNOWN, check_covariates, covariate_columns, supported_covariates
from cxrad.metadata_conditioning.film import NormativeFiLM
from cxrad.metadata_conditioning.options import Films, conditions_maps, register_scorer
from cxrad.metadata_conditioning.reference import CALIBRATION, REFERENCE, films_with_role

REFERENCE_FILE = "normative_reference.npz"
# How a cell of the coarse map summarises the anomaly map under it. "max" keeps a small lesion's peak (what the
# detectors' own image score, the map's maximum, sees); "mean" averages it with the cell's normal tissue.
POOLS = {"max": F.adaptive_max_pool2d, "mean": F.adaptive_avg_pool2d}
SAVED_BEFORE_POOL = "mean"  # the pooling of configs and references saved before the ``pool`` key existed
# What the standardised map is measured in: "sd" each position in its normal spread for films with this metadata
# (z-scores), "detector" the detector's own score units, the map moved to a population-average film.
MAP_UNITS = ("sd", "detector")
log = logging.getLogger(__name__)


def _known(key: str, value: str, choices: Collection[str]) -> str:
    """``value`` if it is one of ``choices``, else ``ValueError`` naming the config key and the choices."""
    if value not in choices:
        msg = f"metadata_conditioning.{key}={value} is unknown; choose from {list(choices)}"
        raise ValueError(msg)
    return value


def check_pool(pool: str) -> str:
    """``pool`` if it is a known pooling, else ``ValueError`` naming the choices."""
    return _known("pool", pool, POOLS)


def check_units(units: str) -> str:
    """``units`` if it is a known unit of the standardised map, else ``ValueError`` naming the choices."""
    return _known("map_units", units, MAP_UNITS)


def pool_maps(anomaly_maps: torch.Tensor, grid: int, pool: str = "max") -> np.ndarray:
    """``(N, grid, grid)`` max- or average-pooled anomaly maps from maps shaped ``(N, [1,] H, W)``."""
    maps = anomaly_maps.detach().float().reshape(-1, 1, *anomaly_maps.shape[-2:])
    return POOLS[check_pool(pool)](maps, grid).squeeze(1).cpu().numpy()


class GridMapCollector(Callback):
    """Keeps every predicted film's anomaly map pooled to ``grid x grid`` (bounded memory)."""

    def __init__(self, grid: int = 16, pool: str = "max") -> None:
        self.grid = grid
        self.pool = check_pool(pool)
        self.maps: dict[int, np.ndarray] = {}
        self.metadata: dict[int, np.ndarray] = {}

    def reset(self) -> None:
        self.maps, self.metadata = {}, {}

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
        if outputs.anomaly_map is None:
            return
        pooled = pool_maps(outputs.anomaly_map, self.grid, self.pool)
        for index, grid_map, meta in zip(
            outputs.sample_index.tolist(), pooled, outputs.metadata.cpu().numpy(), strict=True
        ):
            self.maps[int(index)], self.metadata[int(index)] = grid_map, meta


def normative_map_collector(conditioning: Mapping[str, object]) -> GridMapCollector | None:
    """The grid-map callback when ``metadata_conditioning=normative``; other options need no maps kept."""
    if not conditions_maps(conditioning):
        return None
    return GridMapCollector(int(conditioning.get("grid", 16)), map_pool(conditioning))


def map_pool(conditioning: Mapping[str, object]) -> str:
    """The config's ``pool``; a config saved before the key existed pooled by the mean."""
    return check_pool(str(conditioning.get("pool", SAVED_BEFORE_POOL)))


class NormativeMap:
    """Per-position normal mean and spread of anomaly maps given metadata.

    Args:
        prior_count: ridge strength in pseudo-films (see :class:`NormativeFiLM`).
        min_std_ratio: floor of the conditional spread and of ``r(p)``.
        scale: divide by the spread (False: subtract the conditional mean only).
        position_spread: multiply the per-film spread ``sigma(m)`` by the per-position ratio ``r(p)``, the RMS
            of the reference films' standardised residuals at ``p`` (one number per position from all films, not
            per metadata group: per-group, per-position spreads from tens of films are too noisy to divide by).
            Units ``sd`` only.
        units: ``sd`` (the score is the maximum z-score) or ``detector`` (the maximum of the map moved to a
            population-average film; see the module docstring).
        covariates: the metadata the regressions read (a subset of :data:`~cxrad.data.metadata.COVARIATES`).
        min_reference_films: a covariate is dropped (and listed in ``covariates_dropped``) when one of its known
            levels has fewer reference films than this; the kept ones are ``covariates_used``.
    """

    def __init__(
        self,
        prior_count: float = 1.0,
        min_std_ratio: float = 0.2,
        scale: bool = True,
        position_spread: bool = True,
        units: str = "sd",
        covariates: tuple[str, ...] = COVARIATES,
        min_reference_films: int = 0,
    ) -> None:
        self.film = NormativeFiLM(
            1, prior_count=prior_count, min_std_ratio=min_std_ratio, scale=scale, per_position=True
        )
        self.position_spread = position_spread
        self.units = check_units(units)
        self.covariates = check_covariates(covariates)
        self.min_reference_films = int(min_reference_films)
        self.covariates_used: tuple[str, ...] = self.covariates
        self.covariates_dropped: dict[str, int] = {}
        self.ratio = torch.ones(())
        self.unit = 1.0

    def _in_units(self, maps: np.ndarray) -> torch.Tensor:
        """``maps`` divided by the reference maps' largest magnitude, as float32.

        The regressions square map values: in float32 that overflows past about 1e19, a range flows reach
        (CS-Flow's map is a product of three scales' likelihoods). Every output is unchanged by a common scale of
        the maps (``detector`` units and shift-only residuals are multiplied back), so dividing by one number
        keeps them and keeps the arithmetic in range.
        """
        return torch.from_numpy(np.asarray(maps, dtype=np.float64) / self.unit).float()

    def _select(self, metadata: np.ndarray) -> torch.Tensor:
        """The used covariates' columns of encoded ``metadata``; one constant column when none is used."""
        x = torch.from_numpy(np.asarray(metadata, dtype=np.float32))
        columns = covariate_columns(self.covariates_used) if self.covariates_used else []
        return x[:, columns] if columns else x.new_zeros(len(x), 1)

    def _standardise(self, maps: np.ndarray, metadata: np.ndarray) -> torch.Tensor:
        x = self._in_units(maps).flatten(1)
        mean, std = self.film.conditional_moments(self._select(metadata))
        if not self.film.scale:  # a shift only: the residual in the detector's own units
            return (x - mean) * self.unit
        return (x - mean) / std

    def fit(self, maps: np.ndarray, metadata: np.ndarray) -> NormativeMap:
        self.covariates_used, self.covariates_dropped = supported_covariates(
            metadata, self.covariates, self.min_reference_films
        )
        maps = np.asarray(maps, dtype=np.float64)  # converted once; the maximum and _in_units read it
        largest = float(np.abs(maps).max(initial=0.0))
        self.unit = largest if np.isfinite(largest) and largest > 0 else 1.0
        self.film.fit(self._in_units(maps)[:, None], self._select(metadata))
        self.ratio = torch.ones(())
        if self.units == "sd" and self.position_spread and self.film.scale:  # scale=False: shift only
            rms = self._standardise(maps, metadata).square().mean(0).sqrt()
            self.ratio = rms.clamp_min(self.film.min_std_ratio)
        return self

    def conditioned(self, maps: np.ndarray, metadata: np.ndarray) -> torch.Tensor:
        """The standardised maps ``(N, grid * grid)``: what the score is the maximum of."""
        if self.units == "detector":  # the FiLM itself, on a one-channel map: gamma(m) * a + beta(m)
            x = self._in_units(maps)[:, None]
            return self.film(x, self._select(metadata)).flatten(1) * self.unit
        return self._standardise(maps, metadata) / self.ratio

    def conditioned_maps(self, maps: np.ndarray, metadata: np.ndarray) -> np.ndarray:
        """The standardised maps shaped like ``maps`` ``(N, grid, grid)``, for localization and heatmaps."""
        return self.conditioned(maps, metadata).reshape(maps.shape).double().numpy()

    def score(self, maps: np.ndarray, metadata: np.ndarray) -> np.ndarray:
        """Maximum over positions of the standardised map, one score per film."""
        # float64 like the other scores: float32 values written to CSV read back rounded, off their own cut
        return self.conditioned(maps, metadata).amax(1).double().numpy()


def map_settings(conditioning: Mapping[str, object]) -> dict[str, float | bool | str | tuple[str, ...]]:
    """The map regressions' settings from a ``metadata_conditioning`` config.

    Runs saved before ``map_prior_count``/``position_spread``/``map_units``/``covariates`` existed used
    ``prior_count`` for the map, no position spread, z-scores and every covariate: a config without the keys gets
    those, so ``cxrad.predict`` reproduces such runs.
    """
    return {
        "prior_count": float(conditioning.get("map_prior_count", conditioning.get("prior_count", 5.0))),
        "scale": bool(conditioning.get("scale", True)),
        "position_spread": bool(conditioning.get("position_spread", False)),
        "units": check_units(str(conditioning.get("map_units", "sd"))),
        "covariates": check_covariates(conditioning.get("covariates")),
        "min_reference_films": int(conditioning.get("min_reference_films", 0)),
    }


MIN_NORMAL_VAL = 4
# Below this many normal validation films of a view, the map regressions' estimate for that view rests on a
# handful of films: per position, the mean of 10 films is off by a third of a normal SD, and the maximum over
# positions picks the worst of those errors.
FEW_REFERENCE_FILMS = 20


def require_normal_validation(conditioning: Mapping[str, object], samples: pd.DataFrame) -> None:
    """Fail before any fitting when a map-standardising option cannot be fitted on its reference films.

    ``samples`` carries the validation roles (:func:`~cxrad.metadata_conditioning.reference.assign_val_roles`).
    Also warns when a view has fewer than :data:`FEW_REFERENCE_FILMS` reference films: the run can go on, but
    its normative estimate for that view rests on a handful of films.
    """
    if not conditions_maps(conditioning):
        return
    reference = samples.loc[films_with_role(samples, REFERENCE)]
    n_reference, n_calibration = len(reference), len(films_with_role(samples, CALIBRATION))
    per_view = reference.loc[reference["view"] != UNKNOWN, "view"].value_counts()  # unknown: no group of its own
    few = {str(view): int(count) for view, count in per_view.items() if count < FEW_REFERENCE_FILMS}
    if few and n_reference >= MIN_NORMAL_VAL:
        log.warning(
            "metadata_conditioning=%s: the normative reference has few normal films of view %s "
            "(want >= %d per view); that view's correction rests on them. Raise data.split.val_fraction "
            "if you can spare the training films",
            conditioning.get("name"),
            ", ".join(f"{view}: {count}" for view, count in few.items()),
            FEW_REFERENCE_FILMS,
        )
    if n_reference < MIN_NORMAL_VAL or not n_calibration:
        msg = (
            f"metadata_conditioning={conditioning.get('name')} needs >= {MIN_NORMAL_VAL} normal reference films and "
            f"some normal calibration films in val, got {n_reference} and {n_calibration};"
            " raise data.split.val_fraction or use metadata_conditioning=none/film"
        )
        raise ValueError(msg)


def normative_scores(
    maps: Mapping[int, np.ndarray],
    metadata: Mapping[int, np.ndarray],
    reference: list[int],
    scored: list[int],
    prior_count: float = 1.0,
    scale: bool = True,
    position_spread: bool = True,
    units: str = "sd",
    covariates: tuple[str, ...] = COVARIATES,
    min_reference_films: int = 0,
) -> pd.Series:
    """Normative scores of the ``scored`` films from map regressions fitted on the ``reference`` films.

    Every scored film (calibration and selection validation films, test films) goes through the same fitted
    model, so a threshold set on the calibration films hits its nominal FPR on the test films. A film in both
    lists would be scored in-sample: that is refused.

    Raises:
        ValueError: with fewer than :data:`MIN_NORMAL_VAL` reference films, or a film in both lists.
    """
    if len(reference) < MIN_NORMAL_VAL:
        msg = (
            f"normative conditioning needs >= {MIN_NORMAL_VAL} normal reference films, got {len(reference)}; "
            "raise data.split.val_fraction or metadata_conditioning.reference_fraction"
        )
        raise ValueError(msg)
    both = sorted(set(reference) & set(scored))
    if both:
        msg = f"{len(both)} film(s) (e.g. {both[:3]}) are both reference and scored: they would be scored in-sample"
        raise ValueError(msg)

    model = fit_reference(
        maps, metadata, reference, prior_count, scale, position_spread, units, covariates, min_reference_films
    )
    order = sorted(scored)
    values = model.score(*stack_films(maps, metadata, order)) if order else np.zeros(0)
    return pd.Series(values, index=pd.Index(order, dtype=np.int64), name="score", dtype=np.float64)


def stack_films(
    maps: Mapping[int, np.ndarray], metadata: Mapping[int, np.ndarray], indices: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """The pooled maps ``(N, grid, grid)`` and encoded metadata ``(N, M)`` of ``indices``, in that order."""
    return np.stack([maps[i] for i in indices]), np.stack([metadata[i] for i in indices])


def fit_reference(
    maps: Mapping[int, np.ndarray],
    metadata: Mapping[int, np.ndarray],
    reference: list[int],
    prior_count: float = 1.0,
    scale: bool = True,
    position_spread: bool = True,
    units: str = "sd",
    covariates: tuple[str, ...] = COVARIATES,
    min_reference_films: int = 0,
) -> NormativeMap:
    """The map regressions fitted on the ``reference`` films (the model every scored film goes through)."""
    model = NormativeMap(
        prior_count,
        scale=scale,
        position_spread=position_spread,
        units=units,
        covariates=covariates,
        min_reference_films=min_reference_films,
    )
    return model.fit(*stack_films(maps, metadata, sorted(reference)))


def save_reference(
    path: Path, grid_maps: GridMapCollector, reference: list[int], covariates: tuple[str, ...] = COVARIATES
) -> None:
    """Write the reference films' pooled maps and encoded metadata the scored films' regressions were fitted on,
    with the configured ``covariates`` (the ones the reference supports follow from the saved metadata)."""
    order = sorted(reference)
    maps = np.stack([grid_maps.maps[i] for i in order])
    metadata = np.stack([grid_maps.metadata[i] for i in order])
    np.savez_compressed(
        path,
        maps=maps,
        metadata=metadata,
        grid=np.array(grid_maps.grid),
        pool=np.array(grid_maps.pool),
        covariates=np.array(list(covariates), dtype=str),
    )


def reference_scores(
    run_dir: Path, conditioning: Mapping[str, object], anomaly_maps: torch.Tensor, metadata: np.ndarray
) -> np.ndarray:
    """Normative scores of new films: the run's regressions refitted from :data:`REFERENCE_FILE`.

    Args:
        run_dir: The run directory holding the reference.
        conditioning: The run's ``metadata_conditioning`` config (see :func:`map_settings`).
        anomaly_maps: The films' full anomaly maps ``(N, [1,] H, W)``.
        metadata: Their encoded metadata ``(N, M)`` (the batch's ``metadata``).

    Raises:
        FileNotFoundError: when the run has no reference (it predates it): rerun it.
    """
    scorer = NormativeScorer.load(Path(run_dir), conditioning)
    maps = pool_maps(anomaly_maps, scorer.grid, scorer.pool)
    return scorer.model.score(maps, np.asarray(metadata, dtype=np.float32))


@functools.lru_cache(maxsize=8)
def _reference_model(
    path: str,
    mtime_ns: int,
    prior_count: float,
    scale: bool,
    position_spread: bool,
    units: str,
    covariates: tuple[str, ...],
    min_reference_films: int,
) -> tuple[NormativeMap, int, str]:
    """The regressions fitted on a run's reference, once per file version (predict calls this for every batch)."""
    del mtime_ns  # part of the cache key only: a rewritten reference is refitted
    with np.load(path) as reference:
        films = list(range(len(reference["maps"])))
        model = fit_reference(
            reference["maps"],
            reference["metadata"],
            films,
            prior_count,
            scale=scale,
            position_spread=position_spread,
            units=units,
            covariates=covariates,
            min_reference_films=min_reference_films,
        )
        pool = str(reference["pool"]) if "pool" in reference else SAVED_BEFORE_POOL
        return model, int(reference["grid"]), pool


@register_scorer("normative")
class NormativeScorer:
    """The map regressions as a :class:`~cxrad.metadata_conditioning.options.ScoreConditioner`.

    ``films.maps`` are pooled ``grid x grid`` maps, or full anomaly maps (``cxrad.predict``), pooled here.
    """

    needs_maps: ClassVar[bool] = True

    def __init__(self, settings: Mapping[str, object], grid: int = 16, pool: str = "max") -> None:
        self.settings, self.grid, self.pool = dict(settings), int(grid), check_pool(pool)
        self.model: NormativeMap | None = None

    @classmethod
    def from_config(cls, conditioning: Mapping[str, object]) -> NormativeScorer:
        return cls(map_settings(conditioning), int(conditioning.get("grid", 16)), map_pool(conditioning))

    def _maps(self, films: Films) -> np.ndarray:
        if films.maps is None or films.metadata is None:
            msg = "metadata_conditioning=normative scores films from their anomaly maps and metadata; pass both"
            raise ValueError(msg)
        maps = np.asarray(films.maps)
        return (
            maps
            if maps.shape[-2:] == (self.grid, self.grid)
            else pool_maps(torch.as_tensor(maps), self.grid, self.pool)
        )

    def fit(self, reference: Films) -> NormativeScorer:
        if len(reference.index) < MIN_NORMAL_VAL:
            msg = (
                f"normative conditioning needs >= {MIN_NORMAL_VAL} normal reference films, got "
                f"{len(reference.index)}; raise data.split.val_fraction or metadata_conditioning.reference_fraction"
            )
            raise ValueError(msg)
        self.model = NormativeMap(**self.settings).fit(self._maps(reference), np.asarray(reference.metadata))
        return self

    def score(self, films: Films) -> pd.Series:
        values = self.model.score(self._maps(films), np.asarray(films.metadata)) if films.index else np.zeros(0)
        return pd.Series(values, index=pd.Index(films.index, dtype=np.int64), name="score", dtype=np.float64)

    def conditioned_maps(self, films: Films) -> dict[int, np.ndarray]:
        if not films.index:
            return {}
        maps = self.model.conditioned_maps(self._maps(films), np.asarray(films.metadata))
        return dict(zip(films.index, maps, strict=True))

    def save(self, run_dir: Path, reference: Films) -> None:
        np.savez_compressed(
            Path(run_dir) / REFERENCE_FILE,
            maps=self._maps(reference),
            metadata=np.asarray(reference.metadata),
            grid=np.array(self.grid),
            pool=np.array(self.pool),
            covariates=np.array(list(self.settings["covariates"]), dtype=str),
        )

    @classmethod
    def load(cls, run_dir: Path, conditioning: Mapping[str, object]) -> NormativeScorer:
        """The run's regressions refitted from :data:`REFERENCE_FILE` (once per file version)."""
        path = Path(run_dir) / REFERENCE_FILE
        if not path.is_file():
            msg = f"{path} does not exist: the run predates {REFERENCE_FILE}; rerun it to score new films"
            raise FileNotFoundError(msg)
        settings = map_settings(conditioning)
        model, grid, pool = _reference_model(str(path.resolve()), path.stat().st_mtime_ns, **settings)
        scorer = cls(settings, grid, pool)
        scorer.model = model
        return scorer
