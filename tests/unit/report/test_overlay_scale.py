"""Fixed colour scale, fading and the threshold outline of heat-map overlays."""

from __future__ import annotations

import numpy as np

from cxrad.report.overlay import CONTOUR_RGB, overlay_heatmap


def test_fade_leaves_the_film_untouched_below_the_scale_and_outlines_the_threshold() -> None:
    film = np.full((64, 64), 100, np.uint8)
    anomaly_map = np.zeros((64, 64), np.float32)
    anomaly_map[20:40, 20:40] = 10.0
    panel = overlay_heatmap(film, anomaly_map, value_range=(2.0, 8.0), fade=True, alpha=0.6, contour_level=8.0)
    assert (panel[:10, :10] == 100).all()  # below the scale: transparent
    assert not (panel[30, 30] == 100).all()  # above it: coloured
    assert (panel[20, 20:40] == CONTOUR_RGB).all(axis=1).any()  # white outline where the map reaches 8
    assert (panel[:64] == 100).all(axis=2).sum() > 64 * 64 / 2


def test_value_range_fixes_colours_across_films() -> None:
    film = np.zeros((32, 32), np.uint8)
    low_map, high_map = np.full((32, 32), 3.0, np.float32), np.full((32, 32), 6.0, np.float32)
    low_map[0, 0] = high_map[0, 0] = 0.0  # give each map its own min-max
    a = overlay_heatmap(film, low_map, value_range=(0.0, 6.0), alpha=1.0)
    b = overlay_heatmap(film, high_map, value_range=(0.0, 6.0), alpha=1.0)
    assert not np.array_equal(a[16, 16], b[16, 16])  # 3 and 6 get different colours on one scale
    c = overlay_heatmap(film, low_map, alpha=1.0)
    d = overlay_heatmap(film, high_map, alpha=1.0)
    assert np.array_equal(c[16, 16], d[16, 16])  # per-image scaling makes both the top colour
