"""Thresholds on raw anomaly scores: unsupervised rules on normal validation scores, plus an F1 oracle.

Example:
    >>> import numpy as np
    >>> from cxrad.threshold import fit_threshold
    >>> fit_threshold("percentile", np.arange(101.0), q=95.0).value
    96.0
"""

from cxrad.threshold.fit import METHODS, Threshold, fit_threshold, per_group_threshold, threshold_from_config
from cxrad.threshold.methods import f1_oracle_threshold, gmm_threshold, otsu_threshold, percentile_threshold

__all__ = [
    "METHODS",
    "Threshold",
    "f1_oracle_threshold",
    "fit_threshold",
    "gmm_threshold",
    "otsu_threshold",
    "per_group_threshold",
    "percentile_threshold",
    "threshold_from_config",
]
