"""Image-level metrics of one detector on one test split: overall, per finding, per subgroup, view shortcut.

The input is a predictions table with one row per test image and the columns ``label`` (0 normal, 1
anomalous), ``score`` (raw anomaly score, higher = more anomalous), ``age`` (years, NaN unknown), ``sex``
(M/F/unknown), ``view`` (PA/AP/unknown, plus LATERAL/AP_SUPINE where the dataset keeps them) and
``finding_labels`` ("No Finding" or findings joined by "|"). Optional columns of extra covariates (``site``,
``scanner``, ``portable``) get subgroups of their own.
"""

from __future__ import annotations

import math
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from cxrad.data.metadata import EXTRA_COVARIATES, EXTRA_VIEWS, KNOWN_VIEWS
from cxrad.metrics.curves import aupr, auroc, flag_rate, fpr_at_tpr, rates_at_threshold, tpr_at_fpr
from cxrad.threshold import Threshold

REQUIRED_COLUMNS = ("label", "score", "age", "sex", "view", "finding_labels")
VIEWS = ("PA", "AP", "unknown")  # always reported; extra views (LATERAL, AP_SUPINE) when the data has them
SEXES = ("M", "F", "unknown")
NO_FINDING = "No Finding"
UNKNOWN = "unknown"


def compute_image_metrics(
    predictions: pd.DataFrame, threshold: Threshold, *, age_bands: tuple[float, ...] = (40.0, 60.0)
) -> dict[str, Any]:
    """All image-level metrics of a predictions table, as a JSON-ready dict (NaN written as None).

    Args:
        predictions: One row per test image; columns as in the module docstring.
        threshold: The cut; an image is flagged when ``score >= threshold.value``.
        age_bands: Increasing band edges in years; ``(40, 60)`` gives ``<40``, ``40-60``, ``>=60``.

    Returns:
        Overall AUROC/AUPR on raw scores, FPR/TPR at the threshold, ``tpr_at_fpr_0.05``, ``fpr_at_tpr_0.95``,
        counts, ``per_finding_auroc``, ``subgroups`` (view, sex, age_band), and the view-shortcut metrics of
        :func:`view_shortcut_metrics`.

    Raises:
        ValueError: If a column is missing or holds values outside the cxrad vocabulary.
    """
    frame = check_predictions(predictions)
    labels, scores = frame["label"].to_numpy(), frame["score"].to_numpy()
    cuts = threshold.cuts(frame)
    fpr, tpr = rates_at_threshold(labels, scores, cuts)
    result: dict[str, Any] = {
        "image_auroc": auroc(labels, scores),
        "image_aupr": aupr(labels, scores),
        "threshold_method": threshold.method,
        "threshold": threshold.value,
        "threshold_is_oracle": threshold.is_oracle,
        "threshold_params": dict(threshold.params),
        "threshold_groups": {"by": list(threshold.group_by), "values": dict(threshold.group_values)},
        "fpr": fpr,
        "tpr": tpr,
        "tpr_at_fpr_0.05": tpr_at_fpr(labels, scores, 0.05),
        "fpr_at_tpr_0.95": fpr_at_tpr(labels, scores, 0.95),
        "n_test": int(labels.size),
        "n_test_normal": int((labels == 0).sum()),
        "n_test_abnormal": int((labels == 1).sum()),
        "per_finding_auroc": per_finding_auroc(frame),
        "subgroups": subgroup_metrics(frame, cuts, age_bands),
    }
    result.update(view_shortcut_metrics(frame, cuts))
    result.update(covariate_shortcut_metrics(frame, age_bands))
    return to_json_safe(result)


def check_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """Validate a predictions table and return a copy with an integer ``label`` column.

    Raises:
        ValueError: Naming the missing column or the first value outside the expected set.
    """
    missing = [name for name in REQUIRED_COLUMNS if name not in predictions.columns]
    if missing:
        msg = f"predictions lack column(s) {missing}; expected {list(REQUIRED_COLUMNS)}"
        raise ValueError(msg)
    frame = predictions.reset_index(drop=True).copy()
    bad_labels = sorted(set(frame["label"].tolist()) - {0, 1})
    if bad_labels:
        msg = f"label must be 0 (normal) or 1 (anomalous), got {bad_labels[:5]}"
        raise ValueError(msg)
    if not np.isfinite(frame["score"].to_numpy(dtype=np.float64)).all():
        msg = "predictions hold NaN/inf scores; check the detector output before computing metrics"
        raise ValueError(msg)
    if not pd.api.types.is_numeric_dtype(frame["age"]):
        msg = f"age must be numeric years (NaN unknown), got dtype {frame['age'].dtype}"
        raise ValueError(msg)
    for column, vocabulary in (("view", (*KNOWN_VIEWS, UNKNOWN)), ("sex", SEXES)):
        unknown = sorted(set(frame[column].tolist()) - set(vocabulary), key=str)
        if unknown:
            msg = f"{column} value(s) {unknown[:5]} outside {vocabulary}; map them in the dataset adapter"
            raise ValueError(msg)
    frame["label"] = frame["label"].astype(int)
    return frame


def split_findings(finding_labels: object) -> list[str]:
    """Findings of one image: ``'Effusion|Nodule'`` -> ``['Effusion', 'Nodule']``; "No Finding"/NaN -> []."""
    if not isinstance(finding_labels, str):
        return []
    return [name.strip() for name in finding_labels.split("|") if name.strip() not in ("", NO_FINDING)]


def per_finding_auroc(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """AUROC of each finding: anomalous images carrying it (multi-label rows count for every finding they
    carry) against all normal (label 0) images.

    Returns:
        ``{finding: {"auroc": float | None, "n_positive": int}}``, findings sorted by name.
    """
    findings = frame["finding_labels"].map(split_findings)
    anomalous = frame["label"].to_numpy() == 1
    normal_scores = frame.loc[~anomalous, "score"].to_numpy()
    names = sorted(set(chain.from_iterable(findings[anomalous])))
    result = {}
    for name in names:
        carries = anomalous & findings.map(lambda found, name=name: name in found).to_numpy()
        positive_scores = frame.loc[carries, "score"].to_numpy()
        labels = np.r_[np.zeros(normal_scores.size), np.ones(positive_scores.size)]
        result[name] = {
            "auroc": auroc(labels, np.r_[normal_scores, positive_scores]),
            "n_positive": int(carries.sum()),
        }
    return result


def age_band_names(age_bands: tuple[float, ...]) -> list[str]:
    """Band names for increasing edges: ``(40, 60)`` -> ``['<40', '40-60', '>=60']``.

    Raises:
        ValueError: If the edges are empty or not strictly increasing.
    """
    edges = list(age_bands)
    if not edges or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        msg = f"age_bands={tuple(age_bands)} must be non-empty and strictly increasing, e.g. (40, 60)"
        raise ValueError(msg)
    middle = [f"{low:g}-{high:g}" for low, high in zip(edges, edges[1:], strict=False)]
    return [f"<{edges[0]:g}", *middle, f">={edges[-1]:g}"]


def assign_age_band(ages: np.ndarray, age_bands: tuple[float, ...]) -> np.ndarray:
    """Band name of each age; a band includes its lower edge; NaN -> ``'unknown'``."""
    names = np.array(age_band_names(age_bands), dtype=object)
    values = np.asarray(ages, dtype=np.float64)
    bands = names[np.digitize(np.nan_to_num(values, nan=-np.inf), age_bands)]
    bands[np.isnan(values)] = UNKNOWN
    return bands


def _at(threshold: float | np.ndarray, rows: np.ndarray) -> float | np.ndarray:
    """The cut(s) for the selected rows: a scalar cut applies to all, a per-row array is indexed."""
    return threshold[rows] if isinstance(threshold, np.ndarray) else threshold


def group_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float | np.ndarray) -> dict[str, Any]:
    """AUROC/AUPR (None without both classes), FPR/TPR at the threshold and counts of one subgroup."""
    fpr, tpr = rates_at_threshold(labels, scores, threshold)
    return {
        "auroc": auroc(labels, scores),
        "aupr": aupr(labels, scores),
        "fpr": fpr,
        "tpr": tpr,
        "n": int(labels.size),
        "n_normal": int((labels == 0).sum()),
        "n_abnormal": int((labels == 1).sum()),
    }


def subgroup_metrics(
    frame: pd.DataFrame, threshold: float | np.ndarray, age_bands: tuple[float, ...] = (40.0, 60.0)
) -> dict[str, dict[str, dict[str, Any]]]:
    """:func:`group_metrics` per view, sex and age band (and extra covariate, where the table has one). Every
    group of PA/AP/unknown, sex and age is always reported (stable keys for logging); extra views and covariate
    values appear when the films hold them. An empty group has ``n == 0`` and None metrics.
    """
    labels, scores = frame["label"].to_numpy(), frame["score"].to_numpy()
    attributes = {
        "view": (frame["view"].to_numpy(), (*VIEWS, *present_extra_views(frame))),
        "sex": (frame["sex"].to_numpy(), SEXES),
        "age_band": (
            assign_age_band(frame["age"].to_numpy(), age_bands),
            (*age_band_names(age_bands), UNKNOWN),
        ),
    }
    for column in (c for c in EXTRA_COVARIATES if c in frame.columns):
        values = frame[column].astype(str).to_numpy()
        attributes[column] = (values, tuple(sorted(set(values))))
    return {
        attribute: {
            group: group_metrics(labels[values == group], scores[values == group], _at(threshold, values == group))
            for group in groups
        }
        for attribute, (values, groups) in attributes.items()
    }


def present_extra_views(frame: pd.DataFrame) -> tuple[str, ...]:
    """The views beyond PA/AP (:data:`~cxrad.data.metadata.EXTRA_VIEWS`) that films of ``frame`` have."""
    present = set(frame["view"])
    return tuple(v for v in EXTRA_VIEWS if v in present)


def audited_views(frame: pd.DataFrame) -> tuple[str, ...]:
    """The views the shortcut audit separates: PA and AP always, then the extra views present."""
    return ("PA", "AP", *present_extra_views(frame))


def view_shortcut_metrics(frame: pd.DataFrame, threshold: float | np.ndarray) -> dict[str, Any]:
    """How much the detector's decisions ride on the acquisition view rather than on disease.

    Returns:
        ``view_stratified_auroc``: mean of the within-view AUROCs of :func:`audited_views` (PA and AP, plus e.g.
        LATERAL where present; None if any is undefined).
        ``normal_view_leakage_auroc``: AUROC of the score separating AP normals (positive) from PA normals;
        0.5 = no view shortcut, > 0.5 = AP normals score higher, < 0.5 = over-corrected (PA normals higher).
        ``view_shortcut``: ``|normal_view_leakage_auroc - 0.5|``, the two-sided figure: the score carries view
        information in either direction (0 = none, 0.5 = the view decides). With extra views, the largest
        ``|leakage - 0.5|`` of any view's normals against the normals of the other audited views.
        ``view_only_auroc``: AUROC of predicting the label from the view alone (AP=1, PA=0) on images of
        known view: the score a pure view shortcut would reach.
        ``fpr_ap_normals``, ``fpr_pa_normals``, ``fpr_gap_ap_minus_pa``: flag rates of AP and PA normals at
        the threshold, and their difference.
        ``per_view``: for each audited view, its ``auroc``, ``normal_leakage_auroc`` (its normals against the
        other audited views' normals), ``fpr_normals`` and counts.
    """
    labels, scores, views = frame["label"].to_numpy(), frame["score"].to_numpy(), frame["view"].to_numpy()
    pa, ap = views == "PA", views == "AP"
    normal_pa, normal_ap = scores[pa & (labels == 0)], scores[ap & (labels == 0)]
    cut_ap, cut_pa = _at(threshold, ap & (labels == 0)), _at(threshold, pa & (labels == 0))
    fpr_ap, fpr_pa = flag_rate(normal_ap >= cut_ap), flag_rate(normal_pa >= cut_pa)
    known = pa | ap
    leakage = auroc(np.r_[np.zeros(normal_pa.size), np.ones(normal_ap.size)], np.r_[normal_pa, normal_ap])
    per_view = per_view_metrics(labels, scores, views, threshold, audited_views(frame))
    within = [group["auroc"] for group in per_view.values()]
    shortcut = two_sided(leakage)
    if len(per_view) > 2:
        one_vs_rest = [two_sided(group["normal_leakage_auroc"]) for group in per_view.values()]
        shortcut = None if None in one_vs_rest else max(one_vs_rest)
    return {
        "view_stratified_auroc": None if None in within else float(np.mean(within)),
        "normal_view_leakage_auroc": leakage,
        "view_shortcut": shortcut,
        "view_only_auroc": auroc(labels[known], ap[known].astype(np.float64)),
        "fpr_ap_normals": fpr_ap,
        "fpr_pa_normals": fpr_pa,
        "fpr_gap_ap_minus_pa": None if fpr_ap is None or fpr_pa is None else fpr_ap - fpr_pa,
        "per_view": per_view,
    }


def per_view_metrics(
    labels: np.ndarray, scores: np.ndarray, views: np.ndarray, threshold: float | np.ndarray, audited: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """Within-view AUROC, one-vs-rest normal leakage and normal flag rate of each audited view."""
    normal = labels == 0
    audited_normal = normal & np.isin(views, audited)
    out = {}
    for view in audited:
        rows = views == view
        leak = leakage_auroc(scores, normal & rows, audited_normal & ~rows)
        fpr = flag_rate(scores[normal & rows] >= _at(threshold, normal & rows))
        out[view] = {
            "auroc": auroc(labels[rows], scores[rows]),
            "normal_leakage_auroc": leak,
            "fpr_normals": fpr,
            "n_normal": int((normal & rows).sum()),
            "n_abnormal": int((~normal & rows).sum()),
        }
    return out


def two_sided(leakage: float | None) -> float | None:
    """``|leakage - 0.5|``: how far a leakage AUROC is from carrying no information, in either direction.

    Example:
        >>> two_sided(0.433), two_sided(0.567)
        (0.067, 0.067)
    """
    return None if leakage is None else round(abs(leakage - 0.5), 12)


def leakage_auroc(scores: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> float | None:
    """AUROC of ``scores`` separating the ``positive`` rows from the ``negative`` ones (None without both)."""
    return auroc(
        np.r_[np.zeros(int(negative.sum())), np.ones(int(positive.sum()))], np.r_[scores[negative], scores[positive]]
    )


def covariate_shortcut_metrics(frame: pd.DataFrame, age_bands: tuple[float, ...] = (40.0, 60.0)) -> dict[str, Any]:
    """Shortcut measures for sex and age on the normal films, like the view's.

    Returns:
        ``normal_sex_leakage_auroc`` (F normals positive vs M normals) and ``sex_shortcut`` (its distance from 0.5),
        ``normal_age_leakage_auroc`` (normals of the oldest age band positive vs the youngest band's) and
        ``age_shortcut``. None where a group has no normal film.
    """
    normal = frame["label"].to_numpy() == 0
    scores, sex = frame["score"].to_numpy(np.float64), frame["sex"].to_numpy()
    bands = assign_age_band(frame["age"].to_numpy(), age_bands)
    names = age_band_names(age_bands)
    sex_leak = leakage_auroc(scores, normal & (sex == "F"), normal & (sex == "M"))
    age_leak = leakage_auroc(scores, normal & (bands == names[-1]), normal & (bands == names[0]))
    return {
        "normal_sex_leakage_auroc": sex_leak,
        "sex_shortcut": two_sided(sex_leak),
        "normal_age_leakage_auroc": age_leak,
        "age_shortcut": two_sided(age_leak),
    }


def to_json_safe(value: Any) -> Any:
    """Recursively turn numpy scalars into Python ones and NaN/inf into None, so ``json.dumps`` succeeds."""
    if isinstance(value, dict):
        return {str(key): to_json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [to_json_safe(item) for item in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value
