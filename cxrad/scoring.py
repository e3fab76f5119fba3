"""Collect raw scores (and a few anomaly maps) from ``Engine.predict`` without holding every batch."""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from anomalib.engine import Engine
from anomalib.models import AnomalibModule
from lightning.pytorch import Callback
from torch.utils.data import DataLoader

from cxrad.metrics.localization import LocalizationStats, lesion_truth


@dataclass
class ExtremeMaps:
    """The anomaly maps of the ``k`` highest- and ``k`` lowest-scoring films seen so far."""

    k: int
    top: list[tuple[float, int, np.ndarray]] = field(default_factory=list)
    bottom: list[tuple[float, int, np.ndarray]] = field(default_factory=list)

    def offer(self, score: float, index: int, anomaly_map: torch.Tensor) -> None:
        if self.k <= 0:
            return
        for heap, key in ((self.top, score), (self.bottom, -score)):
            if len(heap) < self.k or key > heap[0][0]:
                entry = (key, index, anomaly_map.squeeze().float().cpu().numpy())
                (heapq.heapreplace if len(heap) >= self.k else heapq.heappush)(heap, entry)

    def maps(self) -> dict[int, np.ndarray]:
        return {index: amap for _, index, amap in self.top + self.bottom}


class ScoreCollector(Callback):
    """Lightning callback that keeps each predicted film's raw score and the extreme anomaly maps.

    It also takes each film's map maximum and, for films listed in ``truth`` (sample index -> ``'mask'`` or
    ``'boxes'``), the localization statistics of :mod:`cxrad.metrics.localization`, so no map is kept.
    """

    def __init__(self, k_maps: int = 0, keep_masks: bool = False) -> None:
        self.k_maps = k_maps
        self.keep_masks = keep_masks  # map conditioning redoes localization on the scored map after the fit
        self.truth: dict[int, str] = {}
        self.reset()

    def reset(self) -> None:
        self.indices: list[int] = []
        self.scores: list[float] = []
        self.map_max: list[float] = []
        self.extremes = ExtremeMaps(self.k_maps)
        self.localization = LocalizationStats()
        self.masks: dict[int, np.ndarray] = {}

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
        scores = outputs.pred_score.detach().reshape(-1).float().cpu()
        indices = outputs.sample_index.detach().reshape(-1).cpu()
        self.indices.extend(indices.tolist())
        self.scores.extend(scores.tolist())
        if outputs.anomaly_map is not None:
            for score, index, amap in zip(scores.tolist(), indices.tolist(), outputs.anomaly_map, strict=True):
                self.extremes.offer(score, index, amap)
            self._measure_maps(indices.tolist(), outputs.anomaly_map, batch.gt_mask)

    def _measure_maps(self, indices: list[int], maps: torch.Tensor, masks: torch.Tensor | None) -> None:
        maps = maps.detach().reshape(len(indices), *maps.shape[-2:]).float().cpu()
        self.map_max.extend(maps.amax(dim=(-2, -1)).tolist())
        for position, index in enumerate(indices):
            kind = self.truth.get(index, "")
            if kind and masks is not None:
                mask = masks[position].detach().reshape(masks.shape[-2:]).cpu().numpy()
                self.localization.add(index, maps[position].numpy(), mask, with_pixels=kind == "mask")
                if self.keep_masks:
                    self.masks[index] = mask.astype(bool)


@dataclass
class Scores:
    """Raw scores of one split, indexed like the sample table, plus extreme anomaly maps and timing.

    ``map_max`` holds each film's anomaly-map maximum (empty without maps); ``localization`` the statistics of
    the films with lesion ground truth.
    """

    score: pd.Series
    maps: dict[int, np.ndarray]
    seconds: float
    map_max: pd.Series = field(default_factory=lambda: pd.Series(dtype=np.float64))
    localization: LocalizationStats = field(default_factory=LocalizationStats)
    masks: dict[int, np.ndarray] = field(default_factory=dict)
    truth: dict[int, str] = field(default_factory=dict)


def predict_scores(
    engine: Engine, model: AnomalibModule, loader: DataLoader, collector: ScoreCollector, k_maps: int = 0
) -> Scores:
    """Score every film of ``loader`` with ``model``; NaN/inf scores are an error, not a silent zero."""
    collector.k_maps = k_maps
    collector.truth = lesion_truth(loader.dataset.table) if hasattr(loader.dataset, "table") else {}
    collector.reset()
    start = time.perf_counter()
    engine.predict(model=model, dataloaders=loader, return_predictions=False)
    seconds = time.perf_counter() - start
    score = pd.Series(collector.scores, index=collector.indices, name="score").sort_index()
    if not np.isfinite(score.to_numpy()).all():
        msg = f"{int((~np.isfinite(score)).sum())} films got non-finite anomaly scores; the model diverged"
        raise FloatingPointError(msg)
    map_max = pd.Series(collector.map_max, index=collector.indices[: len(collector.map_max)], name="map_max")
    maps = collector.extremes.maps()
    return Scores(score, maps, seconds, map_max.sort_index(), collector.localization, collector.masks, collector.truth)


def on_scored_maps(scores: Scores, scored_maps: dict[int, np.ndarray], score: pd.Series, k_maps: int) -> Scores:
    """Localization, map maxima and extreme maps of ``scores`` redone on the maps that were actually scored.

    Map conditioning scores each film by the maximum of its standardised map (``scored_maps``), not of the
    detector's raw map: the pointing game, box hits and heatmaps must look at the same map, and the extreme films
    are the ones the conditioned ``score`` ranks highest and lowest.
    """
    stats = LocalizationStats()
    for index, mask in scores.masks.items():
        stats.add(index, scored_maps[index].astype(np.float32), mask, with_pixels=scores.truth.get(index) == "mask")
    extremes = ExtremeMaps(k_maps)
    for index, value in score.items():
        extremes.offer(float(value), int(index), torch.from_numpy(scored_maps[int(index)]))
    map_max = pd.Series({int(i): float(scored_maps[int(i)].max()) for i in score.index}, name="map_max")
    return replace(scores, maps=extremes.maps(), map_max=map_max.sort_index(), localization=stats)
