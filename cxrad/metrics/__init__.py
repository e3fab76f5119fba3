"""Image-level metrics on raw anomaly scores: overall, per finding, per subgroup and the view shortcut."""

from cxrad.metrics.curves import aupr, auroc, fpr_at_tpr, rates_at_threshold, roc_points, tpr_at_fpr
from cxrad.metrics.image import (
    check_predictions,
    compute_image_metrics,
    per_finding_auroc,
    subgroup_metrics,
    view_shortcut_metrics,
)

__all__ = [
    "aupr",
    "auroc",
    "check_predictions",
    "compute_image_metrics",
    "fpr_at_tpr",
    "per_finding_auroc",
    "rates_at_threshold",
    "roc_points",
    "subgroup_metrics",
    "tpr_at_fpr",
    "view_shortcut_metrics",
]
