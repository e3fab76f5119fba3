"""Metrics on raw anomaly scores: image level (overall, per finding, per subgroup, view shortcut), nodules by
size, and localization of the anomaly maps."""

from cxrad.metrics.curves import aupr, auroc, fpr_at_tpr, rates_at_threshold, roc_points, tpr_at_fpr
from cxrad.metrics.image import (
    check_predictions,
    compute_image_metrics,
    per_finding_auroc,
    subgroup_metrics,
    view_shortcut_metrics,
)
from cxrad.metrics.localization import LocalizationStats, compute_localization_metrics
from cxrad.metrics.nodules import compute_nodule_metrics, nodule_size_mm
from cxrad.metrics.summary import split_metrics, validation_metrics

__all__ = [
    "LocalizationStats",
    "aupr",
    "auroc",
    "check_predictions",
    "compute_image_metrics",
    "compute_localization_metrics",
    "compute_nodule_metrics",
    "fpr_at_tpr",
    "nodule_size_mm",
    "per_finding_auroc",
    "rates_at_threshold",
    "roc_points",
    "split_metrics",
    "subgroup_metrics",
    "tpr_at_fpr",
    "validation_metrics",
    "view_shortcut_metrics",
]
