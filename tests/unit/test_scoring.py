"""Localization and heatmaps follow the map that was scored, not the detector's raw map."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxrad.metrics.localization import LocalizationStats
from cxrad.scoring import Scores, on_scored_maps


def test_localization_and_extremes_are_redone_on_the_scored_maps() -> None:
    """The raw map of each film peaks at a noisy border (a miss); the conditioned map, which decided the score,
    peaks on the lesion: the pointing game must count the hit, and the heatmaps show the conditioned map."""
    size, grid = 32, 4
    mask = np.zeros((size, size), dtype=bool)
    mask[12:20, 12:20] = True
    raw = np.zeros((size, size), dtype=np.float32)
    raw[0, :] = 5.0  # the border dominates the raw map
    raw[14, 14] = 1.0
    stats = LocalizationStats()
    stats.add(0, raw, mask, with_pixels=False)
    assert stats.pointing[0] is False
    scores = Scores(pd.Series([9.0, 1.0], index=[0, 1]), {}, 0.0, localization=stats, masks={0: mask},
                    truth={0: "boxes"})  # fmt: skip
    conditioned = {0: np.zeros((grid, grid)), 1: np.zeros((grid, grid))}
    conditioned[0][2, 2] = 4.0  # the cell over the lesion
    conditioned[1][0, 0] = 1.0
    score = pd.Series([4.0, 1.0], index=[0, 1])
    redone = on_scored_maps(scores, conditioned, score, k_maps=1)
    assert redone.localization.pointing == {0: True}
    assert redone.map_max.tolist() == [4.0, 1.0]  # scores are the conditioned maps' maxima
    assert set(redone.maps) == {0, 1} and redone.maps[0].shape == (grid, grid)
