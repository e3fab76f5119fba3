"""Ranking metrics on raw anomaly scores (scikit-learn, never a sigmoid), safe on degenerate inputs.

Every function returns ``None`` where the quantity is undefined (a class missing), so callers can write the
result straight to JSON.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve


def has_both_classes(labels: np.ndarray) -> bool:
    """True when ``labels`` holds at least one 0 and one 1."""
    y = np.asarray(labels)
    return bool((y == 0).any() and (y == 1).any())


def auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve of raw ``scores`` against 0/1 ``labels``; None without both classes.

    Example:
        >>> auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        0.75
    """
    return float(roc_auc_score(labels, scores)) if has_both_classes(labels) else None


def aupr(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Average precision (area under the precision-recall curve, step rule); None without both classes."""
    return float(average_precision_score(labels, scores)) if has_both_classes(labels) else None


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ROC point, for plotting and operating-point look-ups.

    Args:
        labels: 0/1 labels with both classes.
        scores: Raw anomaly scores.

    Returns:
        ``(fpr, tpr, thresholds)``; point ``i`` flags ``score >= thresholds[i]`` (the first cut is +inf).
    """
    fpr, tpr, cuts = roc_curve(labels, scores, drop_intermediate=False)
    return fpr, tpr, cuts


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, max_fpr: float = 0.05) -> float | None:
    """Highest TPR among the achievable cuts whose FPR is at most ``max_fpr`` (no interpolation)."""
    if not has_both_classes(labels):
        return None
    fpr, tpr, _ = roc_points(labels, scores)
    return float(tpr[fpr <= max_fpr].max())


def fpr_at_tpr(labels: np.ndarray, scores: np.ndarray, min_tpr: float = 0.95) -> float | None:
    """Lowest FPR among the achievable cuts whose TPR is at least ``min_tpr`` (no interpolation)."""
    if not has_both_classes(labels):
        return None
    fpr, tpr, _ = roc_points(labels, scores)
    return float(fpr[tpr >= min_tpr].min())


def flag_rate(flagged: np.ndarray) -> float | None:
    """Share of True in ``flagged``; None when empty (e.g. the FPR of a group with no normals)."""
    values = np.asarray(flagged, dtype=bool)
    return float(values.mean()) if values.size else None


def rates_at_threshold(labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float | None, ...]:
    """``(fpr, tpr)`` when flagging ``score >= threshold``; each None when its class is absent."""
    y = np.asarray(labels)
    flagged = np.asarray(scores) >= threshold
    return flag_rate(flagged[y == 0]), flag_rate(flagged[y == 1])
