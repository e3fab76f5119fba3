"""Does the anomaly map point at the lesion? Pointing game, box hit rate and pixel AUROC.

Only abnormal test films whose sample-table row carries ground truth count: a ``mask_path`` (synthetic
lesion masks) or ``boxes`` (NIH ``BBox_List_2017``). The truth is the film's ``gt_mask`` after the run's
crop/resize, in the anomaly map's frame. Statistics are taken per film while ``Engine.predict`` runs (see
:class:`cxrad.scoring.ScoreCollector`), so no test map is kept.

Definitions:

* **Pointing game**: a film is a hit when the map's maximum (first one on ties) lies inside the lesion mask.
* **Box hit rate at the threshold**: a lesion box is the bounding box of a connected component of the film's
  mask (an NIH box, unless boxes overlap and merge; the box around one synthetic lesion outline). It is hit
  when its film is flagged at the run's threshold *and* the map exceeds the map threshold somewhere inside it.
  When the image score is the map's maximum (PaDiM, FastFlow, DRAEM without score calibration) the map
  threshold is the image threshold itself (per film for per-group cuts). Otherwise (PatchCore's re-weighted
  score, calibrated scores) the image threshold is carried into map units by matching its false-positive rate
  on the normal validation films: the map threshold is the ``1 - fpr_val`` quantile of their map maxima.
* **Pixel AUROC** (films with masks only, pixels of lesion films): each film contributes at most ``cap``
  pixels inside and ``cap`` outside its mask, drawn without replacement by a generator seeded with the film's
  sample index, each weighted by ``pixels in its class / pixels drawn``. The weighted AUROC is an unbiased
  estimate of the pooled pixel AUROC with memory bounded by ``2 * cap`` values per film, whatever the maps'
  range (a fixed-bin histogram would need that range in advance, and it differs by model and backbone).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from cxrad.threshold import Threshold

PIXEL_CAP = 256


def lesion_truth(table: pd.DataFrame) -> dict[int, str]:
    """Sample index -> ``'mask'`` or ``'boxes'`` for abnormal films with real ground truth (others absent)."""
    if "label" not in table.columns:
        return {}
    abnormal = table["label"].to_numpy() == 1
    mask = table.get("mask_path", pd.Series("", index=table.index)).fillna("").astype(str).to_numpy() != ""
    boxes = table.get("boxes", pd.Series("", index=table.index)).fillna("").astype(str).to_numpy() != ""
    kinds = np.where(mask, "mask", np.where(boxes, "boxes", ""))
    return {int(i): str(k) for i, k, a in zip(table.index, kinds, abnormal, strict=True) if a and k}


def pointing_hit(anomaly_map: np.ndarray, mask: np.ndarray) -> bool:
    """True when the map's (first) maximum lies inside ``mask``.

    Example:
        >>> m = np.zeros((4, 4)); m[1, 2] = 5.0
        >>> pointing_hit(m, m > 0), pointing_hit(m, np.eye(4, dtype=bool))
        (True, False)
    """
    row, col = np.unravel_index(int(np.argmax(anomaly_map)), anomaly_map.shape)
    return bool(mask[row, col])


def box_peaks(anomaly_map: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Maximum of the map inside the bounding box of each connected lesion region of ``mask`` (8-connected).

    Example:
        >>> m = np.arange(16.0).reshape(4, 4); regions = np.zeros((4, 4), bool)
        >>> regions[0, 0] = regions[3, 3] = True
        >>> box_peaks(m, regions).tolist()
        [0.0, 15.0]
    """
    count, _, boxes, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return np.array([anomaly_map[y : y + h, x : x + w].max() for x, y, w, h, _ in boxes[1:count]], dtype=np.float64)


def sample_pixels(
    anomaly_map: np.ndarray, mask: np.ndarray, cap: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At most ``cap`` map values inside and ``cap`` outside ``mask``, with labels and inverse-rate weights."""
    values, labels, weights = [], [], []
    flat_map, flat_mask = anomaly_map.ravel(), mask.ravel().astype(bool)
    for label, where in ((1, np.flatnonzero(flat_mask)), (0, np.flatnonzero(~flat_mask))):
        if where.size == 0:
            continue
        pick = where if where.size <= cap else rng.choice(where, size=cap, replace=False)
        values.append(flat_map[pick].astype(np.float32))
        labels.append(np.full(pick.size, label, dtype=np.int8))
        weights.append(np.full(pick.size, where.size / pick.size, dtype=np.float32))
    return np.concatenate(values), np.concatenate(labels), np.concatenate(weights)


@dataclass
class LocalizationStats:
    """Per-film localization statistics gathered during prediction (bounded memory)."""

    pixel_cap: int = PIXEL_CAP
    pointing: dict[int, bool] = field(default_factory=dict)
    peaks: dict[int, np.ndarray] = field(default_factory=dict)
    pixels: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    n_pixel_films: int = 0

    def add(self, index: int, anomaly_map: np.ndarray, mask: np.ndarray, with_pixels: bool) -> None:
        """Record one film; a film whose lesion fell outside the crop (empty mask) is skipped."""
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        if anomaly_map.shape != mask.shape:
            anomaly_map = cv2.resize(anomaly_map, mask.shape[::-1], interpolation=cv2.INTER_LINEAR)
        self.pointing[index] = pointing_hit(anomaly_map, mask)
        self.peaks[index] = box_peaks(anomaly_map, mask)
        if with_pixels:
            self.pixels.append(sample_pixels(anomaly_map, mask, self.pixel_cap, np.random.default_rng(index)))
            self.n_pixel_films += 1


def map_threshold_by_fpr(val_map_max: np.ndarray, val_flagged: np.ndarray) -> float:
    """Map threshold flagging the same share of normal validation films as the image threshold does.

    Example:
        >>> map_threshold_by_fpr(np.arange(1.0, 11.0), np.r_[np.zeros(8), np.ones(2)].astype(bool))
        8.2
    """
    fpr = float(np.mean(val_flagged))
    return float(np.quantile(np.asarray(val_map_max, dtype=np.float64), 1.0 - fpr))


def scores_are_map_maxima(scores: np.ndarray, map_max: np.ndarray) -> bool:
    """True when every image score equals its map's maximum (no re-weighting, no calibration)."""
    return bool(scores.size and np.allclose(scores, map_max, rtol=1e-5, atol=1e-6))


def box_hits(stats: LocalizationStats, predictions: pd.DataFrame, map_cut: pd.Series) -> tuple[int, int, int]:
    """``(hit boxes, boxes, films)``: boxes of flagged films whose peak reaches the film's map cut."""
    hits = boxes = 0
    for index, peaks in stats.peaks.items():
        boxes += peaks.size
        if predictions.at[index, "pred_label"] == 1:
            hits += int((peaks >= map_cut[index]).sum())
    return hits, boxes, len(stats.peaks)


def pixel_auroc(stats: LocalizationStats) -> dict[str, Any]:
    """Weighted pixel AUROC over the sampled pixels (None without both classes)."""
    if not stats.pixels:
        return {"auroc": None, "n_films": 0, "n_pixels_sampled": 0}
    values, labels, weights = (np.concatenate(part) for part in zip(*stats.pixels, strict=True))
    both = (labels == 0).any() and (labels == 1).any()
    value = float(roc_auc_score(labels, values, sample_weight=weights)) if both else None
    return {"auroc": value, "n_films": stats.n_pixel_films, "n_pixels_sampled": int(values.size)}


def compute_localization_metrics(
    stats: LocalizationStats,
    test_map_max: pd.Series,
    predictions: pd.DataFrame,
    val_scores: pd.DataFrame,
    threshold: Threshold,
) -> dict[str, Any]:
    """``pointing_game``, ``box_hit_rate`` and ``pixel_auroc`` of one run (see the module definitions).

    Args:
        stats: What :class:`~cxrad.scoring.ScoreCollector` gathered on the test films.
        test_map_max: Each test film's map maximum, indexed like ``predictions``.
        predictions: Test films (indexed by sample index) with ``score`` and ``pred_label``.
        val_scores: Normal validation films with ``map_max`` and ``pred_label`` at the run's threshold.
        threshold: The run's threshold (per-film cuts when fitted per group).
    """
    n_films = len(stats.pointing)
    pointing = sum(stats.pointing.values()) / n_films if n_films else None
    result: dict[str, Any] = {"pointing_game": {"rate": pointing, "n_films": n_films}}
    scores = predictions["score"].to_numpy(np.float64)
    map_max = test_map_max.reindex(predictions.index).to_numpy(np.float64)
    if scores_are_map_maxima(scores, map_max):
        map_cut = pd.Series(threshold.cuts(predictions), index=predictions.index)
        rule, shared_cut = "image threshold (scores are map maxima)", None if threshold.group_by else threshold.value
    elif len(val_scores) and val_scores["map_max"].notna().all():
        shared_cut = map_threshold_by_fpr(val_scores["map_max"].to_numpy(), val_scores["pred_label"].to_numpy() == 1)
        map_cut = pd.Series(shared_cut, index=predictions.index)
        rule = "validation-FPR-matched map threshold"
    else:
        map_cut, rule, shared_cut = None, "no validation maps", None
    hits, boxes, films = box_hits(stats, predictions, map_cut) if map_cut is not None else (0, 0, 0)
    result["box_hit_rate"] = {
        "rate": hits / boxes if boxes else None,
        "n_boxes": boxes,
        "n_films": films,
        "map_threshold": shared_cut,
        "map_threshold_rule": rule,
    }
    result["pixel_auroc"] = pixel_auroc(stats)
    return result
