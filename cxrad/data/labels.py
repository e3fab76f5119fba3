"""Labels of the report-mined datasets (CheXpert, MIMIC-CXR, PadChest) in the sample table's terms.

CheXpert and MIMIC-CXR-JPG share the CheXpert labeler's 14 columns with the values ``1.0`` (positive), ``0.0``
(negative), ``-1.0`` (uncertain) and blank (not mentioned). An uncertain finding follows ``data.uncertain``:

- ``exclude`` (default): it is no evidence either way; a film whose label rests on it (no definite positive
  finding) is dropped and counted (``uncertain_excluded``). A film with a definite finding stays abnormal.
- ``positive``: it counts as the finding (U-Ones).
- ``negative``: it counts as absent (U-Zeros); a film whose only mentions were uncertain is then normal.

A film is abnormal when any finding is positive; normal when none is and the dataset says "No Finding" (or, under
``negative``, its uncertain findings were resolved to absent); other films (nothing positive, no "No Finding")
are unlabelled and dropped (``unlabelled``). Labels in ``non_findings`` (default "Support Devices") never make
a film abnormal.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxrad.data.table import NORMAL_FINDING

log = logging.getLogger(__name__)

CHEXPERT_FINDINGS = (
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
UNCERTAIN_POLICIES = ("exclude", "positive", "negative")
DEFAULT_NON_FINDINGS = ("Support Devices",)


@dataclass(frozen=True)
class FilmLabels:
    """Per-film labels: ``label`` (0/1, -1 = dropped), ``finding_labels`` ('|'-joined) and the policy's counts."""

    label: np.ndarray
    finding_labels: pd.Series
    counts: dict[str, int]


def check_policy(uncertain: str) -> str:
    """``uncertain`` if it is one of :data:`UNCERTAIN_POLICIES`, else ``ValueError`` naming the choices."""
    if uncertain not in UNCERTAIN_POLICIES:
        msg = f"data.uncertain={uncertain!r} is unknown; choose one of {list(UNCERTAIN_POLICIES)}"
        raise ValueError(msg)
    return uncertain


def chexpert_labels(
    raw: pd.DataFrame, uncertain: str = "exclude", non_findings: Sequence[str] = DEFAULT_NON_FINDINGS
) -> FilmLabels:
    """Film labels from CheXpert-labeler columns (``No Finding`` + the findings of :data:`CHEXPERT_FINDINGS`).

    Example:
        >>> raw = pd.DataFrame({"No Finding": [1.0, None, None], "Edema": [None, 1.0, -1.0]})
        >>> labels = chexpert_labels(raw)
        >>> labels.label.tolist(), labels.finding_labels.tolist()[:2], labels.counts["uncertain_excluded"]
        ([0, 1, -1], ['No Finding', 'Edema'], 1)
    """
    check_policy(uncertain)
    skip = set(non_findings)
    findings = [c for c in CHEXPERT_FINDINGS if c in raw.columns and c not in skip]
    values = raw[findings].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    certain = values == 1.0
    unsure = values == -1.0
    positive = certain | unsure if uncertain == "positive" else certain
    no_finding = pd.to_numeric(raw.get("No Finding", pd.Series(np.nan, index=raw.index)), errors="coerce")
    says_normal = (no_finding == 1.0).to_numpy()
    has_unsure = unsure.any(1)
    abnormal = positive.any(1)
    normal = ~abnormal & (says_normal | (has_unsure if uncertain == "negative" else False))
    if uncertain == "exclude":
        normal &= ~has_unsure  # a "No Finding" beside an uncertain mention is not a sure normal
    label = np.where(abnormal, 1, np.where(normal, 0, -1))
    names = np.asarray(findings, dtype=object)
    # Only the findings the policy makes positive are listed (per-finding metrics and test_findings read them).
    finding_labels = ["|".join(names[row]) or NORMAL_FINDING for row in positive]
    counts = {
        "uncertain_films": int(has_unsure.sum()),
        "uncertain_excluded": int(((label == -1) & has_unsure).sum()),
        "uncertain_to_positive": int((has_unsure & ~certain.any(1)).sum()) if uncertain == "positive" else 0,
        "uncertain_to_negative": int((has_unsure & normal).sum()) if uncertain == "negative" else 0,
        "unlabelled": int(((label == -1) & ~has_unsure).sum()),
    }
    return FilmLabels(label, pd.Series(finding_labels, index=raw.index, dtype=object), counts)


def apply_labels(frame: pd.DataFrame, labels: FilmLabels, policy: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """Set ``label``/``finding_labels``, drop the films without a label, and return the counts (logged)."""
    out = frame.assign(label=labels.label, finding_labels=labels.finding_labels.to_numpy())
    dropped = out["label"] == -1
    if labels.counts.get("uncertain_films"):
        log.info("data.uncertain=%s: %s", policy, labels.counts)
    if dropped.any():
        log.info("dropping %d films without a sure label (%s)", int(dropped.sum()), labels.counts)
    return out[~dropped].reset_index(drop=True), dict(labels.counts)
