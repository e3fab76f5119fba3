"""Stratified baseline: per-metadata-group score calibration on normal validation (reference) films.

Each film's raw score is standardised against the normal films of its own group (view x sex x age band),
falling back to coarser groups (view x sex, then view, then everyone) when a group has fewer than
``min_group_size`` normal films. This equalises score levels across groups, so a global threshold flags AP and
PA normals at similar rates, but it cannot change the ranking *inside* a group: the reference point that FiLM,
which changes the features themselves, has to beat.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cxrad.metadata_conditioning.normative import GridMapCollector, map_settings, normative_scores
from cxrad.metadata_conditioning.options import conditions_maps
from cxrad.metadata_conditioning.reference import REFERENCE, films_with_role, fits_on_validation
from cxrad.threshold.fit import group_keys

LEVELS: tuple[tuple[str, ...], ...] = (("view", "sex", "age_band"), ("view", "sex"), ("view",))
ROBUST_STD = 1.349  # interquartile range of a standard normal


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


def calibrate_scores(
    conditioning: Mapping[str, object],
    val: pd.Series,
    test: pd.Series,
    samples: pd.DataFrame,
    grid_maps: GridMapCollector | None = None,
) -> tuple[pd.Series, pd.Series]:
    """Re-score films for the score-level options; others pass through.

    ``stratified`` and ``film_stratified`` calibrate whole-image scores per group; ``normative`` and
    ``film_normative`` standardise each film's coarse anomaly map (``grid_maps``) against normal films with the
    same metadata. Both are fitted on the validation films whose role is ``reference`` (see
    :mod:`cxrad.metadata_conditioning.reference`) and applied alike to every other validation film and every test
    film.

    Returns:
        The scores of the validation films that are not reference films (reference films have no out-of-sample
        score) and of the test films, in the units the threshold is fitted in.
    """
    if not fits_on_validation(conditioning):
        return val, test
    reference = films_with_role(samples, REFERENCE, val.index)
    scored_val = [int(i) for i in val.index if i not in set(reference)]
    if conditions_maps(conditioning):
        if grid_maps is None or not grid_maps.maps:
            msg = "metadata_conditioning=normative needs the films' anomaly maps (scored through cxrad.run)"
            raise ValueError(msg)
        scored = scored_val + [int(i) for i in test.index]
        scores = normative_scores(grid_maps.maps, grid_maps.metadata, reference, scored, **map_settings(conditioning))
        return scores.loc[scored_val], scores.loc[test.index]
    calibration = GroupCalibration(min_group_size=int(conditioning.get("min_group_size", 10)))
    calibration.fit(val.loc[reference], samples.loc[reference])
    return (
        calibration.transform(val.loc[scored_val], samples.loc[scored_val]),
        calibration.transform(test, samples.loc[test.index]),
    )
