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

METHODS = ("otsu", "percentile", "gmm", "f1_oracle")


@dataclass(frozen=True)
class Threshold:
    """A fitted cut on raw anomaly scores; an image is flagged when ``score >= value``.

    Attributes:
        value: The cut, in raw score units.
        method: One of :data:`METHODS`.
        is_oracle: True when the cut was chosen with test labels (``f1_oracle``): never report it as
            deployable.
        params: The rule's settings, e.g. ``{"q": 95.0}``.
    """

    value: float
    method: str
    is_oracle: bool
    params: dict[str, float] = field(default_factory=dict)


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
        n_components: Mixture size for ``gmm``.
        seed: EM random state for ``gmm``.
        tail: Target false-positive rate for ``gmm``.

    Returns:
        The fitted :class:`Threshold`.

    Raises:
        ValueError: On an unknown method, empty or non-finite validation scores, or a missing oracle input.

    Example:
        >>> fit_threshold("percentile", np.arange(101.0), q=90.0).value
        90.0
    """
    if method not in METHODS:
        msg = f"unknown threshold method {method!r}; choose one of {', '.join(METHODS)}"
        raise ValueError(msg)
    normal = check_scores(normal_val_scores)
    if method == "otsu":
        return Threshold(otsu_threshold(normal), method, False, {})
    if method == "percentile":
        return Threshold(percentile_threshold(normal, q), method, False, {"q": float(q)})
    if method == "gmm":
        value = gmm_threshold(normal, n_components=n_components, seed=seed, tail=tail)
        params = {"n_components": float(n_components), "seed": float(seed), "tail": float(tail)}
        return Threshold(value, method, False, params)
    if test_scores is None or test_labels is None:
        msg = "method 'f1_oracle' needs test_scores and test_labels; pass both or pick an unsupervised method"
        raise ValueError(msg)
    return Threshold(f1_oracle_threshold(test_scores, test_labels), method, True, {})


def threshold_from_config(
    config: Mapping[str, object], val_scores: pd.Series, test_scores: pd.Series, samples: pd.DataFrame, seed: int = 0
) -> Threshold:
    """Fit ``conf/threshold/<method>.yaml`` on the normal validation scores (test labels only for the oracle)."""
    params = {k: v for k, v in config.items() if k != "method"}
    test_labels = samples.loc[test_scores.index, "label"].to_numpy()
    return fit_threshold(
        str(config["method"]),
        val_scores.to_numpy(),
        test_scores=test_scores.to_numpy(),
        test_labels=test_labels,
        seed=seed,
        **params,
    )
