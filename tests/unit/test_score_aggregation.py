"""Film scores from anomaly maps: each aggregation on hand-made maps, inside and outside a thorax mask."""

from __future__ import annotations

import pytest
import torch

from cxrad.aggregation import AggregationConfig, aggregate, restrict, score_maps

SIDE = 32


def hot_pixel_and_diffuse() -> torch.Tensor:
    """Map 0: one hot pixel (10) on zeros; map 1: an 8x8 region raised to 3 on zeros."""
    maps = torch.zeros(2, SIDE, SIDE)
    maps[0, 16, 16] = 10.0
    maps[1, 8:16, 8:16] = 3.0
    return maps


def test_max_prefers_the_hot_pixel_and_the_means_prefer_the_diffuse_region() -> None:
    maps = hot_pixel_and_diffuse()
    peak = aggregate(maps, None, AggregationConfig("max"))
    top = aggregate(maps, None, AggregationConfig("topk_mean", top_percent=5.0))
    upper = aggregate(maps, None, AggregationConfig("upper_percentile", percentile=95.0))
    assert peak.tolist() == [10.0, 3.0]
    k = round(SIDE * SIDE * 0.05)  # 51 values: the hot pixel and 50 zeros vs 51 of the 64 raised values
    assert top.tolist() == pytest.approx([10.0 / k, 3.0])
    assert upper[1] > upper[0]


def test_topk_mean_and_upper_percentile_on_a_ramp() -> None:
    ramp = torch.arange(100, dtype=torch.float32).reshape(1, 10, 10)
    top = aggregate(ramp, None, AggregationConfig("topk_mean", top_percent=10.0))
    upper = aggregate(ramp, None, AggregationConfig("upper_percentile", percentile=90.0))
    assert float(top[0]) == pytest.approx(sum(range(90, 100)) / 10)
    assert float(upper[0]) == pytest.approx(sum(range(90, 100)) / 10)  # values >= the 90th percentile (89.1)


def test_values_outside_the_mask_do_not_count_and_are_set_to_the_in_mask_minimum() -> None:
    maps = torch.full((1, SIDE, SIDE), 1.0)
    maps[0, 0, 0] = 50.0  # a hot corner: a burned-in marker
    maps[0, 10:20, 10:20] = 2.0 + torch.arange(100, dtype=torch.float32).reshape(10, 10) / 100
    mask = torch.zeros(1, SIDE, SIDE, dtype=torch.bool)
    mask[0, 5:25, 5:25] = True
    assert float(aggregate(maps, mask, AggregationConfig("max"))[0]) == pytest.approx(2.99)
    restricted = restrict(maps, mask)
    assert float(restricted[0, 0, 0]) == 1.0 and torch.equal(restricted[mask], maps[mask])


def test_an_empty_mask_scores_the_whole_map() -> None:
    maps = hot_pixel_and_diffuse()
    empty = torch.zeros_like(maps, dtype=torch.bool)
    assert aggregate(maps, empty, AggregationConfig("max")).tolist() == [10.0, 3.0]
    assert torch.equal(restrict(maps, empty), maps)


def test_native_keeps_the_detector_score_but_restricts_the_map() -> None:
    maps = hot_pixel_and_diffuse()[:, None]  # (B, 1, H, W) as anomalib returns them
    pred = torch.tensor([7.0, 8.0])
    mask = torch.zeros(2, SIDE // 2, SIDE // 2, dtype=torch.bool)  # half resolution: resized to the map
    mask[:, :6, :6] = True
    score, scored = score_maps(pred, maps, mask, AggregationConfig("native"))
    assert torch.equal(score, pred) and scored.shape == maps.shape
    assert float(scored[0].max()) == 0.0  # the hot pixel at (16, 16) lies outside the mask
    score, _ = score_maps(pred, maps, None, AggregationConfig("max"))
    assert score.tolist() == [10.0, 3.0]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"name": "mean"}, r"aggregation=mean is unknown; choose from \['native', 'max'"),
        ({"name": "topk_mean", "top_percent": 0.0}, r"top_percent=0.0 must be a percentage in \(0, 100\]"),
        ({"name": "upper_percentile", "percentile": 100.0}, r"percentile=100.0 must lie in \[0, 100\)"),
    ],
)
def test_bad_settings_fail_naming_the_value(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AggregationConfig(**settings)


def test_map_aggregation_without_maps_fails_naming_the_fix() -> None:
    with pytest.raises(ValueError, match="aggregation=max needs anomaly maps.*use aggregation=native"):
        score_maps(torch.zeros(2), None, None, AggregationConfig("max"))
