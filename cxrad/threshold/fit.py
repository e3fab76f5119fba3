"""Pick a threshold rule by name and record how the cut was made."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cxrad.threshold.methods import (
    check_scores,
    f1_oracle_threshold,
    gmm_threshold,
    otsu_threshold,
    percentile_threshold,
)

METHODS = ("otsu", "percentile", "gmm", "f1_oracle", "per_group")


@dataclass(frozen=True)
class Threshold:
    """A fitted cut on raw anomaly scores; an image is flagged when ``score >= value``.

    Attributes:
        value: The cut, in raw score units.
        method: One of :data:`METHODS`.
        is_oracle: True when the cut was chosen with test labels (``f1_oracle``): never report it as
            deployable.
        params: The rule's settings, e.g. ``{"q": 95.0}``.
        group_by: metadata columns whose combined value picks a per-group cut (``per_group``), else empty.
        group_values: cut per group key (e.g. ``{"AP": 2.1, "PA": 1.7}``); other groups use ``value``.
    """

    value: float
    method: str
    is_oracle: bool
    params: dict[str, float] = field(default_factory=dict)
    group_by: tuple[str, ...] = ()
    group_values: dict[str, float] = field(default_factory=dict)

    def cuts(self, frame: pd.DataFrame) -> np.ndarray:
        """The cut that applies to each row of ``frame`` (one value unless fitted per group)."""
        if not self.group_by:
            return np.full(len(frame), self.value, dtype=np.float64)
        keys = group_keys(frame, self.group_by)
        return keys.map(self.group_values).fillna(self.value).to_numpy(dtype=np.float64)


def fit_threshold(
    method: str,
    normal_val_scores: np.ndarray,
    *,
    test_scores: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    q: float = 95.0,
    n_components: int = 2,
    seed: int = 0,
    tail: float = 0.01,
    conformal: bool = True,
) -> Threshold:
    """Fit a threshold with the named rule.

    The unsupervised rules (``otsu``, ``percentile``, ``gmm``) see only ``normal_val_scores``; test scores and
    labels are ignored for them. ``f1_oracle`` uses ``test_scores`` and ``test_labels`` alone.

    Args:
        method: ``otsu`` | ``percentile`` | ``gmm`` | ``f1_oracle``.
        normal_val_scores: Raw scores of normal validation films (always checked, even for the oracle, so
            that an empty validation split fails the same way under every rule).
        test_scores: Raw test scores, for ``f1_oracle`` only.
        test_labels: 0/1 test labels, for ``f1_oracle`` only.
        q: Percentile for ``percentile``.
        conformal: ``percentile`` uses the split-conformal order statistic (see :func:`percentile_threshold`).
        n_components: Mixture size for ``gmm``.
        seed: EM random state for ``gmm``.
        tail: Target false-positive rate for ``gmm``.

    Returns:
        The fitted :class:`Threshold`.

    Raises:
        ValueError: On an unknown method, empty or non-finite validation scores, or a missing oracle input.

    Example:
        >>> fit_threshold("percentile", np.arange(101.0), q=90.0).value
        91.0
    """
    if method not in METHODS:
        msg = f"unknown threshold method {method!r}; choose one of {', '.join(METHODS)}"
        raise ValueError(msg)
    normal = check_scores(normal_val_scores)
    if method == "otsu":
        return Threshold(otsu_threshold(normal), method, False, {})
    if method == "percentile":
        params = {"q": float(q), "conformal": float(conformal)}
        return Threshold(percentile_threshold(normal, q, conformal), method, False, params)
    if method == "gmm":
        value = gmm_threshold(normal, n_components=n_components, seed=seed, tail=tail)
        params = {"n_components": float(n_components), "seed": float(seed), "tail": float(tail)}
        return Threshold(value, method, False, params)
    if method == "per_group":
        msg = "per_group thresholds need the films' metadata; call per_group_threshold(scores, frame, ...)"
        raise ValueError(msg)
    if test_scores is None or test_labels is None:
        msg = "method 'f1_oracle' needs test_scores and test_labels; pass both or pick an unsupervised method"
        raise ValueError(msg)
    return Threshold(f1_oracle_threshold(test_scores, test_labels), method, True, {})


def group_keys(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.Series:
    """One key per row joining the values of ``columns`` (age becomes its band), e.g. ``'AP|F'``."""
    parts = [age_bands(frame["age"]) if column == "age_band" else frame[column].astype(str) for column in columns]
    keys = parts[0]
    for part in parts[1:]:
        keys = keys + "|" + part
    return keys


def age_bands(ages: pd.Series, edges: tuple[float, ...] = (40.0, 60.0)) -> pd.Series:
    """'<40' / '40-60' / '>=60' / 'unknown' labels (the bands of the subgroup metrics)."""
    names = [f"<{edges[0]:g}", *(f"{a:g}-{b:g}" for a, b in zip(edges, edges[1:], strict=False)), f">={edges[-1]:g}"]
    index = np.searchsorted(np.asarray(edges), ages.to_numpy(dtype=np.float64), side="right")
    labels = np.asarray(names, dtype=object)[np.minimum(index, len(names) - 1)]
    return pd.Series(np.where(ages.isna(), "unknown", labels), index=ages.index)


def per_group_threshold(
    normal_scores: pd.Series,
    normal_frame: pd.DataFrame,
    *,
    q: float = 95.0,
    group_by: tuple[str, ...] = ("view",),
    min_group_size: int = 10,
    conformal: bool = True,
) -> Threshold:
    """The q-th percentile of normal validation scores within each metadata group.

    Groups with fewer than ``min_group_size`` normal films use the global percentile (a noisy per-group cut
    is worse than a shared one). Equalises the false-positive rate across groups without changing any
    ranking, so AUROCs are untouched.

    Example:
        >>> f = pd.DataFrame({"view": ["PA"] * 10 + ["AP"] * 10, "age": 50.0})
        >>> s = pd.Series(list(range(10)) + list(range(10, 20)), dtype=float)
        >>> t = per_group_threshold(s, f, q=50.0, min_group_size=5)
        >>> t.group_values
        {'AP': 15.0, 'PA': 5.0}
    """
    overall = percentile_threshold(check_scores(normal_scores.to_numpy()), q, conformal)
    keys = group_keys(normal_frame, group_by)
    values = {
        str(key): percentile_threshold(scores.to_numpy(), q, conformal)
        for key, scores in normal_scores.groupby(keys.to_numpy())
        if len(scores) >= min_group_size
    }
    params = {"q": float(q), "min_group_size": float(min_group_size), "conformal": float(conformal)}
    return Threshold(overall, "per_group", False, params, tuple(group_by), dict(sorted(values.items())))


def threshold_from_config(
    config: Mapping[str, object], val_scores: pd.Series, test_scores: pd.Series, samples: pd.DataFrame, seed: int = 0
) -> Threshold:
    """Fit ``conf/threshold/<method>.yaml`` on the normal validation scores (test labels only for the oracle).

    ``val_scores`` may hold abnormal validation films (they are for model selection): only the normal ones, scored
    exactly as the test films (the calibration films), set the cut.
    """
    params = {k: v for k, v in config.items() if k != "method"}
    val_scores = val_scores[(samples.loc[val_scores.index, "label"] == 0).to_numpy()]
    if config["method"] == "per_group":
        normal_val = samples.loc[val_scores.index]
        group_by = tuple(params.pop("group_by", ("view",)))
        return per_group_threshold(val_scores, normal_val, group_by=group_by, **params)
    test_labels = samples.loc[test_scores.index, "label"].to_numpy()
    return fit_threshold(
        str(config["method"]),
        val_scores.to_numpy(),
        test_scores=test_scores.to_numpy(),
        test_labels=test_labels,
        seed=seed,
        **params,
    )
