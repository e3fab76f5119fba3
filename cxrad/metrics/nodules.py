"""Nodule detection by size: how well the detector finds small nodules, the seed study's first criterion.

Size of an image's nodule, in mm (the rule, in this order):

1. ``lesion_sizes_mm`` (``'Nodule:7.5;Mass:42.0'``, written by the synthetic generator): the diameter drawn.
2. Otherwise its ``Nodule`` boxes (``'Nodule:x,y,w,h;...'`` in the ``boxes_frame`` pixel frame, NIH's
   ``BBox_List_2017``): ``mean(w, h) * pixel_spacing_mm``, where ``pixel_spacing_mm`` is the size in mm of one
   pixel of the boxes frame (NIH: ``OriginalImagePixelSpacing[x] * OriginalImage[Width] / 1024``).
3. Otherwise unknown (NaN): the image still counts for :data:`nodule_auroc` but for no size band.

An image with several nodules takes the largest: a 7 mm nodule beside a 25 mm one is not a small-nodule case.

Every AUROC here compares nodule images (label 1) with the normal images (label 0) of the same test split and
reports ``{"auroc", "n_positive", "n_normal", "low_confidence"}``; ``low_confidence`` is true below
``min_positives`` positive images (the AUROC then moves by several points with one image).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from cxrad.metrics.curves import auroc

NODULE = "nodule"
SIZE_COLUMN = "nodule_size_mm"


def sizes_from_text(text: object) -> list[float]:
    """Nodule diameters in ``lesion_sizes_mm`` text.

    Example:
        >>> sizes_from_text("Nodule:7.5;Mass:42.0;Nodule:12.0")
        [7.5, 12.0]
    """
    if not isinstance(text, str):
        return []
    parts = (part.rsplit(":", 1) for part in text.split(";") if ":" in part)
    return [float(size) for kind, size in parts if kind.strip().lower() == NODULE]


def sizes_from_boxes(text: object, mm_per_pixel: float) -> list[float]:
    """Nodule sizes from ``'Kind:x,y,w,h;...'`` boxes: ``mean(w, h) * mm_per_pixel`` per Nodule box.

    Example:
        >>> sizes_from_boxes("Nodule:100,200,40,60;Mass:0,0,300,300", 0.2)
        [10.0]
    """
    if not isinstance(text, str) or not math.isfinite(mm_per_pixel) or mm_per_pixel <= 0:
        return []
    sizes = []
    for part in filter(None, text.split(";")):
        kind, coords = part.rsplit(":", 1)
        if kind.strip().lower() == NODULE:
            _, _, width, height = (float(v) for v in coords.split(","))
            sizes.append((width + height) / 2.0 * mm_per_pixel)
    return sizes


def nodule_size_mm(frame: pd.DataFrame) -> pd.Series:
    """Each image's largest nodule in mm (NaN when it has none or no size is known); see the module rule."""
    has = {c: c in frame.columns for c in ("lesion_sizes_mm", "boxes", "pixel_spacing_mm")}

    def size(row: pd.Series) -> float:
        found = sizes_from_text(row["lesion_sizes_mm"]) if has["lesion_sizes_mm"] else []
        if not found and has["boxes"] and has["pixel_spacing_mm"]:
            found = sizes_from_boxes(row["boxes"], float(row["pixel_spacing_mm"]))
        return max(found) if found else math.nan

    if frame.empty:
        return pd.Series(np.nan, index=frame.index, name=SIZE_COLUMN, dtype=np.float64)
    return frame.apply(size, axis=1).astype(np.float64).rename(SIZE_COLUMN)


def findings_of(finding_labels: object) -> set[str]:
    """Lower-case findings of one image (``'Effusion|Nodule'`` -> ``{'effusion', 'nodule'}``)."""
    if not isinstance(finding_labels, str):
        return set()
    return {name.strip().lower() for name in finding_labels.split("|")} - {"", "no finding"}


def positive_vs_normal(frame: pd.DataFrame, positive: np.ndarray, min_positives: int) -> dict[str, Any]:
    """AUROC of the ``positive`` images against the normal ones, with counts and the confidence flag."""
    normal = frame["label"].to_numpy() == 0
    scores = frame["score"].to_numpy(dtype=np.float64)
    keep = positive | normal
    n_positive = int(positive.sum())
    return {
        "auroc": auroc(positive[keep].astype(int), scores[keep]),
        "n_positive": n_positive,
        "n_normal": int(normal.sum()),
        "low_confidence": n_positive < min_positives,
    }


def size_band_names(edges: Sequence[float]) -> list[str]:
    """``(10, 20)`` -> ``['<10 mm', '10-20 mm', '>=20 mm']``; a band includes its lower edge."""
    middle = [f"{low:g}-{high:g} mm" for low, high in zip(edges, edges[1:], strict=False)]
    return [f"<{edges[0]:g} mm", *middle, f">={edges[-1]:g} mm"]


def selection_band(by_size: dict[str, Any], overall: dict[str, Any], min_positives: int) -> dict[str, Any]:
    """The nodule AUROC that model selection uses: the smallest size band with >= ``min_positives`` positives.

    Small nodules are the users' first criterion, but NIH's boxed nodules measure 10.8-48.2 mm, so a fixed
    "< 10 mm" term would always be missing. When no band has enough positives, all nodules are used if they
    do; otherwise the term is None and ``note`` says why (never dropped silently).

    Example:
        >>> bands = {"<10 mm": {"auroc": None, "n_positive": 0}, "10-20 mm": {"auroc": 0.7, "n_positive": 25}}
        >>> selection_band(bands, {"auroc": 0.6, "n_positive": 40}, 20)["band"]
        '10-20 mm'
    """
    for name, values in by_size.items():
        if isinstance(values, dict) and values["n_positive"] >= min_positives and values["auroc"] is not None:
            note = f"smallest nodule size band with >= {min_positives} positives"
            return {"auroc": values["auroc"], "band": name, "n_positive": values["n_positive"], "note": note}
    if overall["n_positive"] >= min_positives and overall["auroc"] is not None:
        note = f"no size band has >= {min_positives} positives: all nodules"
        return {"auroc": overall["auroc"], "band": "all sizes", "n_positive": overall["n_positive"], "note": note}
    note = f"only {overall['n_positive']} nodule film(s) (< {min_positives}): no nodule term"
    return {"auroc": None, "band": None, "n_positive": overall["n_positive"], "note": note}


def compute_nodule_metrics(
    predictions: pd.DataFrame,
    small_nodule_mm: float = 10.0,
    size_bands_mm: Sequence[float] = (10.0, 20.0, 30.0),
    min_positives: int = 20,
    selection_min_positives: int = 20,
) -> dict[str, Any]:
    """Nodule AUROCs overall, for small nodules, by size band and for images whose only finding is Nodule.

    Args:
        predictions: Test images with ``label``, ``score``, ``finding_labels`` and ``nodule_size_mm``
            (:func:`nodule_size_mm`; computed here from the size columns when absent).
        small_nodule_mm: Nodules strictly below this diameter are small.
        size_bands_mm: Strictly increasing band edges in mm.
        min_positives: Below this many positive images a value is marked ``low_confidence``.
        selection_min_positives: The band of ``selection_nodule_auroc`` needs this many positives
            (:func:`selection_band`).

    Returns:
        ``nodule_auroc``, ``small_nodule_auroc`` (with ``max_mm``), ``nodule_auroc_by_size`` (one entry per band
        plus ``n_unknown_size``), ``nodule_only_auroc`` and ``selection_nodule_auroc`` (with the band used).

    Raises:
        ValueError: If the band edges are empty or not increasing.
    """
    edges = [float(edge) for edge in size_bands_mm]
    if not edges or any(high <= low for low, high in zip(edges, edges[1:], strict=False)):
        msg = f"metrics.nodule_size_bands_mm={list(size_bands_mm)} must be non-empty and increasing, e.g. [10, 20]"
        raise ValueError(msg)
    frame = predictions.reset_index(drop=True)
    sizes = (frame[SIZE_COLUMN] if SIZE_COLUMN in frame.columns else nodule_size_mm(frame)).to_numpy(np.float64)
    findings = frame["finding_labels"].map(findings_of)
    nodule = (frame["label"].to_numpy() == 1) & findings.map(lambda found: NODULE in found).to_numpy()
    band = np.digitize(np.nan_to_num(sizes, nan=-1.0), edges)
    by_size: dict[str, Any] = {
        name: positive_vs_normal(frame, nodule & ~np.isnan(sizes) & (band == i), min_positives)
        for i, name in enumerate(size_band_names(edges))
    }
    by_size["n_unknown_size"] = int((nodule & np.isnan(sizes)).sum())
    small = positive_vs_normal(frame, nodule & (sizes < small_nodule_mm), min_positives)
    only = nodule & findings.map(lambda found: found == {NODULE}).to_numpy()
    overall = positive_vs_normal(frame, nodule, min_positives)
    return {
        "nodule_auroc": overall,
        "selection_nodule_auroc": selection_band(by_size, overall, selection_min_positives),
        "small_nodule_auroc": {**small, "max_mm": float(small_nodule_mm)},
        "nodule_auroc_by_size": by_size,
        "nodule_only_auroc": positive_vs_normal(frame, only, min_positives),
    }
