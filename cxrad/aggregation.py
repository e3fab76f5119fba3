"""Image-level aggregation: the film's score taken from its (ROI-masked) anomaly map (``conf/aggregation/``).

``native`` keeps the detector's own image score; the others read the map, so every model's film score can come
from the same place: ``max`` (the map maximum), ``topk_mean`` (the mean of the top ``top_percent`` % of map
values) and ``upper_percentile`` (the mean of the values at or above the ``percentile``-th percentile). With a
thorax mask (``preprocessing.roi``) only the values inside it count, and the map outside it is set to its
in-mask minimum, so the heatmaps, the localization metrics and map conditioning see the map that was scored.

This is the film-level summary of a map; :mod:`cxrad.model.components.aggregation` (local averaging of feature
maps inside the detector) is a different step.

Example:
    >>> maps = torch.zeros(1, 10, 10)
    >>> maps[0, 0, 0] = 5.0
    >>> float(aggregate(maps, None, AggregationConfig("max"))[0])
    5.0
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback

log = logging.getLogger(__name__)

AGGREGATIONS = ("native", "max", "topk_mean", "upper_percentile")


@dataclass(frozen=True)
class AggregationConfig:
    """The ``aggregation`` group: ``name`` and its parameter (ignored by the others).

    Args:
        name: one of :data:`AGGREGATIONS`.
        top_percent: ``topk_mean``: share of the (in-mask) map averaged, in percent (0, 100].
        percentile: ``upper_percentile``: values at or above this percentile [0, 100) are averaged.
    """

    name: str = "native"
    top_percent: float = 1.0
    percentile: float = 99.0

    def __post_init__(self) -> None:
        if self.name not in AGGREGATIONS:
            msg = f"aggregation={self.name} is unknown; choose from {list(AGGREGATIONS)}"
            raise ValueError(msg)
        if not 0 < self.top_percent <= 100:
            msg = f"aggregation.top_percent={self.top_percent} must be a percentage in (0, 100], e.g. 1.0"
            raise ValueError(msg)
        if not 0 <= self.percentile < 100:
            msg = f"aggregation.percentile={self.percentile} must lie in [0, 100), e.g. 99.0"
            raise ValueError(msg)

    @classmethod
    def from_config(cls, node: Any | None) -> AggregationConfig:  # noqa: ANN401 - a DictConfig, a dict or None
        """From the composed ``cfg.aggregation`` (None: a run saved before the group existed, i.e. ``native``)."""
        if node is None:
            return cls()
        return cls(**{key: node[key] for key in ("name", "top_percent", "percentile") if key in node})


def fit_mask(roi_mask: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """``(B, h, w)`` bool masks resized (nearest) to a map's ``(H, W)``."""
    masks = roi_mask.reshape(-1, *roi_mask.shape[-2:]).bool()
    if tuple(masks.shape[-2:]) == tuple(shape):
        return masks
    return F.interpolate(masks[:, None].float(), size=shape, mode="nearest")[:, 0].bool()


def restrict(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` maps with every value outside its film's mask set to the map's in-mask minimum.

    A film whose mask is empty keeps its whole map (there is nothing else to score).
    """
    masks = masks | ~masks.flatten(1).any(dim=1)[:, None, None]
    inside_min = torch.where(masks, maps, torch.full_like(maps, float("inf"))).flatten(1).amin(dim=1)
    return torch.where(masks, maps, inside_min[:, None, None])


def aggregate(maps: torch.Tensor, masks: torch.Tensor | None, config: AggregationConfig) -> torch.Tensor:
    """One score per ``(B, H, W)`` map from its values inside ``masks`` (all values when None).

    Raises:
        ValueError: for ``native``, which has no map aggregation (the detector's own score is kept).
    """
    if config.name == "native":
        msg = "aggregation=native keeps the detector's image score; there is no map aggregation to compute"
        raise ValueError(msg)
    masks = torch.ones_like(maps, dtype=torch.bool) if masks is None else masks
    masks = masks | ~masks.flatten(1).any(dim=1)[:, None, None]
    scores = [_aggregate_values(amap[mask], config) for amap, mask in zip(maps, masks, strict=True)]
    return torch.stack(scores)


def _aggregate_values(values: torch.Tensor, config: AggregationConfig) -> torch.Tensor:
    values = values.float()
    if config.name == "max":
        return values.max()
    if config.name == "topk_mean":
        k = max(1, round(values.numel() * config.top_percent / 100))
        return values.topk(k).values.mean()
    cut = torch.quantile(values, config.percentile / 100)
    return values[values >= cut].mean()


def score_maps(
    pred_score: torch.Tensor, anomaly_map: torch.Tensor | None, roi_mask: torch.Tensor | None, config: AggregationConfig
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The films' scores and maps as scored: maps restricted to the ROI, scores aggregated from them.

    ``native`` keeps ``pred_score`` (the map is still restricted, for the heatmaps and localization).
    """
    if anomaly_map is None:
        if config.name != "native":
            msg = f"aggregation={config.name} needs anomaly maps but the model returns none; use aggregation=native"
            raise ValueError(msg)
        return pred_score, None
    shape = anomaly_map.shape
    maps = anomaly_map.reshape(-1, *shape[-2:]).float()
    masks = fit_mask(roi_mask, tuple(shape[-2:])) if roi_mask is not None else None
    if masks is not None:
        maps = restrict(maps, masks)
    score = pred_score if config.name == "native" else aggregate(maps, masks, config).reshape(pred_score.shape)
    return score.to(pred_score.dtype), maps.reshape(shape).to(anomaly_map.dtype)


class FilmScoring(Callback):
    """Rewrites each predicted batch's ``pred_score`` and ``anomaly_map`` as :func:`score_maps` scores them.

    Registered before every other callback, so the collected scores, heatmaps, localization and map conditioning
    all read the restricted map and the aggregated score.
    """

    def __init__(self, config: AggregationConfig) -> None:
        self.config = config

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
        roi_mask = getattr(outputs, "roi_mask", None)
        if self.config.name == "native" and roi_mask is None:
            return
        score, anomaly_map = score_maps(outputs.pred_score.detach(), outputs.anomaly_map, roi_mask, self.config)
        outputs.pred_score = score
        if anomaly_map is not None:
            outputs.anomaly_map = anomaly_map


def film_scoring(cfg: Any) -> FilmScoring:  # noqa: ANN401 - the composed run config (a DictConfig)
    """The :class:`FilmScoring` callback of a run config (``native`` when it has no ``aggregation`` group)."""
    config = AggregationConfig.from_config(cfg.get("aggregation"))
    if config.name == "native" and cfg.preprocessing.get("roi", "none") != "none":
        log.warning(
            "preprocessing.roi=%s with aggregation=native: films are cleaned and maps restricted to the thorax, "
            "but the film score is the detector's own and ignores the mask; set aggregation=max (or topk_mean) "
            "to score inside it",
            cfg.preprocessing.roi,
        )
    return FilmScoring(config)
