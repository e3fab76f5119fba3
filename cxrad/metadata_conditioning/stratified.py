"""Stratified baseline: per-metadata-group score calibration on normal validation (reference) films.

Each film's raw score is standardised against the normal films of its own group (view x sex x age band),
falling back to coarser groups (view x sex, then view, then everyone) when a group has fewer than
``min_group_size`` normal films. This equalises score levels across groups, so a global threshold flags AP and
PA normals at similar rates, but it cannot change the ranking *inside* a group: the reference point that FiLM,
which changes the features themselves, has to beat.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from cxrad.data.metadata import COVARIATES, MetadataEncoder, check_covariates, supported_covariates
from cxrad.metadata_conditioning.options import Films, register_scorer
from cxrad.metadata_conditioning.reference import REFERENCE, films_with_role, fits_on_validation
from cxrad.threshold.fit import group_keys

log = logging.getLogger(__name__)
LEVELS: tuple[tuple[str, ...], ...] = (("view", "sex", "age_band"), ("view", "sex"), ("view",))
ROBUST_STD = 1.349  # interquartile range of a standard normal
COVARIATE_OF_COLUMN = {"view": "view", "sex": "sex", "age_band": "age"}


def levels_for(covariates: tuple[str, ...] = COVARIATES) -> tuple[tuple[str, ...], ...]:
    """:data:`LEVELS` restricted to ``covariates``, finest first, without repeats or empty levels.

    Example:
        >>> levels_for(("view",)), levels_for(("sex", "age"))
        ((('view',),), (('sex', 'age_band'), ('sex',)))
    """
    levels = (tuple(c for c in level if COVARIATE_OF_COLUMN[c] in covariates) for level in LEVELS)
    return tuple(level for level in dict.fromkeys(levels) if level)


def encoded_metadata(samples: pd.DataFrame, indices: list[int]) -> np.ndarray:
    """The films' metadata encoded as the batches encode it (:class:`MetadataEncoder`)."""
    rows = samples.loc[indices, ["age", "sex", "view"]].itertuples(index=False)
    encoder = MetadataEncoder()
    return (
        np.stack([encoder.encode(float(a), str(s), str(v)).numpy() for a, s, v in rows])
        if indices
        else (np.zeros((0, encoder.dim), dtype=np.float32))
    )


def used_covariates(conditioning: Mapping[str, object], samples: pd.DataFrame) -> dict[str, object]:
    """The covariates an option fitted on the reference films conditions on, and those dropped for want of films.

    For ``metadata_conditioning.covariates`` each one needs ``min_reference_films`` reference films in each of its
    known levels (:func:`~cxrad.data.metadata.supported_covariates`); the map regressions apply the same rule to
    the same films. Logged as a warning when one is dropped; the run records the result in ``metrics.json``.
    """
    configured = check_covariates(conditioning.get("covariates"))
    if not fits_on_validation(conditioning):
        return {"covariates": list(configured)}
    reference = films_with_role(samples, REFERENCE)
    used, dropped = supported_covariates(
        encoded_metadata(samples, reference), configured, int(conditioning.get("min_reference_films", 0))
    )
    if dropped:
        log.warning(
            "metadata_conditioning=%s: dropped covariate(s) %s: the reference has too few films of a level (%s; "
            "want >= %s). Conditioning on %s",
            conditioning.get("name"),
            ", ".join(dropped),
            ", ".join(f"{c}: {n}" for c, n in dropped.items()),
            conditioning.get("min_reference_films"),
            ", ".join(used) or "no covariate",
        )
    return {"covariates": list(configured), "covariates_used": list(used), "covariates_dropped": dropped}


@dataclass
class GroupCalibration:
    """Robust z-scores of raw anomaly scores within metadata groups.

    Example:
        >>> frame = pd.DataFrame({"view": ["PA"] * 4 + ["AP"] * 4, "sex": "M", "age": 50.0})
        >>> normal = pd.Series([1.0, 2.0, 3.0, 4.0, 11.0, 12.0, 13.0, 14.0])
        >>> cal = GroupCalibration(min_group_size=4).fit(normal, frame)
        >>> cal.transform(normal, frame).round(2).tolist()  # PA and AP normals now share one scale
        [-1.35, -0.45, 0.45, 1.35, -1.35, -0.45, 0.45, 1.35]
    """

    min_group_size: int = 10
    levels: tuple[tuple[str, ...], ...] = LEVELS
    stats: dict[tuple[int, str], tuple[float, float]] = field(default_factory=dict)
    overall: tuple[float, float] = (0.0, 1.0)

    def fit(self, normal_scores: pd.Series, normal_frame: pd.DataFrame) -> GroupCalibration:
        """Median and robust spread of normal scores per group at every level (groups large enough only)."""
        values = normal_scores.to_numpy(dtype=np.float64)
        if values.size == 0:
            msg = "stratified calibration needs normal validation films; raise data.split.val_fraction"
            raise ValueError(msg)
        self.overall = _location_scale(values, floor=0.0)
        for level, columns in enumerate(self.levels):
            keys = group_keys(normal_frame, columns).to_numpy()
            for key in np.unique(keys):
                group = values[keys == key]
                if group.size >= self.min_group_size:
                    self.stats[(level, str(key))] = _location_scale(group, floor=0.1 * self.overall[1])
        return self

    def transform(self, scores: pd.Series, frame: pd.DataFrame) -> pd.Series:
        """Scores standardised by the finest fitted group of each film."""
        location = np.full(len(scores), self.overall[0])
        scale = np.full(len(scores), self.overall[1])
        resolved = np.zeros(len(scores), dtype=bool)
        for level, columns in enumerate(self.levels):
            keys = group_keys(frame, columns).to_numpy()
            for i in np.flatnonzero(~resolved):
                found = self.stats.get((level, str(keys[i])))
                if found is not None:
                    location[i], scale[i] = found
                    resolved[i] = True
        return pd.Series((scores.to_numpy(dtype=np.float64) - location) / scale, index=scores.index, name="score")


def _location_scale(values: np.ndarray, floor: float) -> tuple[float, float]:
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    spread = (q75 - q25) / ROBUST_STD
    if spread <= 0:
        spread = float(values.std()) or 1.0
    return float(q50), float(max(spread, floor))


@register_scorer("stratified")
class GroupScorer:
    """:class:`GroupCalibration` as a :class:`~cxrad.metadata_conditioning.options.ScoreConditioner`.

    The groups follow ``covariates``, less those the reference cannot support (``min_reference_films``).
    """

    needs_maps: ClassVar[bool] = False

    def __init__(self, min_group_size: int, covariates: tuple[str, ...], min_reference_films: int) -> None:
        self.min_group_size, self.covariates, self.min_reference_films = min_group_size, covariates, min_reference_films
        self.calibration: GroupCalibration | None = None

    @classmethod
    def from_config(cls, conditioning: Mapping[str, object]) -> GroupScorer:
        return cls(
            int(conditioning.get("min_group_size", 10)),
            check_covariates(conditioning.get("covariates")),
            int(conditioning.get("min_reference_films", 0)),
        )

    def fit(self, reference: Films) -> GroupScorer:
        metadata = encoded_metadata(reference.frame, list(reference.frame.index))
        used, _ = supported_covariates(metadata, self.covariates, self.min_reference_films)
        self.calibration = GroupCalibration(self.min_group_size, levels=levels_for(used))
        self.calibration.fit(reference.raw, reference.frame)
        return self

    def score(self, films: Films) -> pd.Series:
        return self.calibration.transform(films.raw, films.frame)

    def conditioned_maps(self, films: Films) -> None:
        return None

    def save(self, run_dir: Path, reference: Films) -> None:
        """Nothing beyond the run's ``val_scores.csv``, which holds the reference films' raw scores and roles."""

    @classmethod
    def load(cls, run_dir: Path, conditioning: Mapping[str, object]) -> GroupScorer:
        """Refitted, exactly as in the run, from the reference rows of the run's ``val_scores.csv``."""
        path = Path(run_dir) / "val_scores.csv"
        if not path.is_file():
            msg = f"{path} does not exist: the run predates val_scores.csv; rerun it to score calibrated films"
            raise FileNotFoundError(msg)
        val = pd.read_csv(path)
        val = val.assign(label=val["label"] if "label" in val.columns else 0)
        reference = films_with_role(val, REFERENCE)
        films = Films(reference, val.loc[reference, "raw_score"], val.loc[reference])
        return cls.from_config(conditioning).fit(films)
