"""The metrics a run writes for its test split (with confidence intervals) and for its validation split.

Validation metrics are what :mod:`cxrad.analysis.selection` ranks runs on: they come from the validation films
scored exactly as the test films are (the calibration normals and the abnormal validation films; never the
reference films a conditioning option was fitted on). Test metrics are reported, never selected on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from cxrad.metrics.bootstrap import bootstrap_metrics
from cxrad.metrics.image import compute_image_metrics, to_json_safe
from cxrad.metrics.nodules import compute_nodule_metrics
from cxrad.threshold import Threshold

# Validation figures written flat as ``val_<name>`` (the ones selection and sweep tables read).
VALIDATION_KEYS = (
    "image_auroc",
    "view_stratified_auroc",
    "normal_view_leakage_auroc",
    "view_shortcut",
    "sex_shortcut",
    "age_shortcut",
    "fpr",
    "tpr",
    "fpr_ap_normals",
    "fpr_pa_normals",
    "fpr_gap_ap_minus_pa",
    "n_test",
    "n_test_normal",
    "n_test_abnormal",
)


def _settings(config: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key) if config is not None else None
    return dict(value) if value else {}


def split_metrics(
    predictions: pd.DataFrame, threshold: Threshold, config: Mapping[str, Any], seed: int = 0
) -> dict[str, Any]:
    """Image, nodule and shortcut metrics of the test films, with patient-bootstrap CIs under ``ci``.

    Args:
        predictions: The test predictions table (:func:`cxrad.report.outputs.predictions_table`).
        threshold: The run's threshold.
        config: ``cfg.metrics`` (``nodules`` and ``bootstrap`` settings).
        seed: Seeds the bootstrap.
    """
    result = {
        **compute_image_metrics(predictions, threshold),
        **compute_nodule_metrics(predictions, **_settings(config, "nodules")),
    }
    bootstrap = _settings(config, "bootstrap")
    if bootstrap.pop("enabled", True):
        result["ci"] = bootstrap_metrics(predictions, threshold.cuts(predictions), seed=seed, **bootstrap)
    return to_json_safe(result)


def validation_metrics(
    val_predictions: pd.DataFrame, threshold: Threshold, config: Mapping[str, Any]
) -> dict[str, Any]:
    """The same figures on the scored validation films: ``val`` (nested) and flat ``val_<name>`` keys.

    Without abnormal validation films (``data.split.strategy=normal_patients``) the AUROCs are None: such a sweep
    cannot be ranked on validation, and :mod:`cxrad.analysis.selection` says so.
    """
    image = compute_image_metrics(val_predictions, threshold)
    nodules = compute_nodule_metrics(val_predictions, **_settings(config, "nodules"))
    flat = {f"val_{key}": image.get(key) for key in VALIDATION_KEYS}
    flat["val_nodule_auroc"] = nodules["nodule_auroc"]["auroc"]
    flat["val_selection_nodule_auroc"] = nodules["selection_nodule_auroc"]["auroc"]
    nested = {
        **{key: image.get(key) for key in VALIDATION_KEYS},
        "per_finding_auroc": image["per_finding_auroc"],
        **nodules,
    }
    return to_json_safe({**flat, "val": nested})
