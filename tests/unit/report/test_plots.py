"""Report figures: files are written as real PNGs; overlays keep the film, outline masks, draw boxes."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrad.report.overlay import BOX_RGB, MASK_RGB
from cxrad.report.plots import (
    overlay_heatmap,
    panel_caption,
    plot_pr,
    plot_roc,
    plot_score_distribution,
    save_heatmap_grid,
)
from cxrad.threshold import Threshold

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
THRESHOLD = Threshold(value=0.6, method="percentile", is_oracle=False, params={"q": 95.0})


@pytest.fixture
def predictions() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(40, int), np.ones(20, int)]
    views = np.where(rng.random(60) < 0.5, "AP", "PA")
    scores = rng.normal(0.0, 1.0, 60) + 1.5 * labels + 0.5 * (views == "AP")
    findings = np.where(labels == 1, "Effusion|Nodule", "No Finding")
    return pd.DataFrame(
        {"label": labels, "score": scores, "age": rng.uniform(20, 80, 60), "sex": "F", "view": views,
         "finding_labels": findings}
    )  # fmt: skip


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_curve_and_distribution_plots_write_pngs(predictions: pd.DataFrame, tmp_path: Path) -> None:
    assert_png(plot_roc(predictions, tmp_path / "roc.png", "ROC", threshold=THRESHOLD))
    assert_png(plot_pr(predictions, tmp_path / "pr.png", "PR", threshold=THRESHOLD))
    assert_png(plot_score_distribution(predictions, THRESHOLD, tmp_path / "nested" / "scores.png"))


def test_curve_plots_survive_a_view_with_one_class(predictions: pd.DataFrame, tmp_path: Path) -> None:
    only_normal_ap = predictions[(predictions["view"] == "PA") | (predictions["label"] == 0)]
    assert_png(plot_roc(only_normal_ap, tmp_path / "roc.png", "ROC"))
    assert_png(plot_pr(only_normal_ap, tmp_path / "pr.png", "PR"))


def make_overlay(**kwargs) -> np.ndarray:
    film = np.full((128, 96), 100, dtype=np.uint8)
    anomaly_map = np.zeros((32, 24), dtype=np.float32)
    anomaly_map[8:16, 8:16] = 5.0
    return overlay_heatmap(film, anomaly_map, caption="score 5.0 | abnormal", **kwargs)


def test_overlay_is_rgb_uint8_film_with_a_caption_band_below() -> None:
    panel = make_overlay()
    assert panel.dtype == np.uint8 and panel.ndim == 3 and panel.shape[2] == 3
    assert panel.shape[1] == 96 and panel.shape[0] > 128
    assert panel[:128].std() > 0  # the map coloured the film
    assert (panel[128:] > 200).any()  # white caption text on the black band


def test_overlay_outlines_the_mask_in_green() -> None:
    mask = np.zeros((128, 96), dtype=bool)
    mask[40:80, 30:60] = True
    panel = make_overlay(mask=mask)
    assert tuple(panel[40, 45]) == MASK_RGB  # top edge of the mask
    assert tuple(panel[79, 45]) == MASK_RGB  # bottom edge
    assert tuple(panel[60, 45]) != MASK_RGB  # inside stays film + map


def test_overlay_resizes_a_small_mask_to_the_film() -> None:
    mask = np.zeros((32, 24), dtype=np.uint8)
    mask[10:20, 5:15] = 1  # covers film rows 40..79, cols 20..59
    panel = make_overlay(mask=mask)
    assert tuple(panel[40, 40]) == MASK_RGB


def test_overlay_draws_boxes_in_cyan() -> None:
    panel = make_overlay(boxes=[("Nodule", 20, 50, 30, 20)])
    assert tuple(panel[50, 35]) == BOX_RGB  # top edge of the box
    assert tuple(panel[60, 20]) == BOX_RGB  # left edge


def test_overlay_accepts_rgb_and_keeps_the_film_without_map_weight() -> None:
    film = np.zeros((64, 64, 3), dtype=np.uint8)
    film[..., 0] = 200
    panel = overlay_heatmap(film, np.random.default_rng(0).random((8, 8)), alpha=0.0, caption="")
    assert (panel[:64] == film).all()


def test_overlay_rejects_float_films_and_bad_maps() -> None:
    with pytest.raises(ValueError, match="uint8"):
        overlay_heatmap(np.zeros((8, 8)), np.zeros((8, 8)))
    with pytest.raises(ValueError, match="NaN"):
        overlay_heatmap(np.zeros((8, 8), np.uint8), np.full((8, 8), np.nan))


def test_panel_caption_shows_score_findings_and_metadata() -> None:
    caption = panel_caption(2.5, 1, "Effusion|Nodule", float("nan"), "M", "PA")
    assert caption == "score 2.5 | abnormal: Effusion|Nodule\nage unknown, M, PA"


def test_heatmap_grid_writes_a_png(tmp_path: Path) -> None:
    panels = [make_overlay() for _ in range(5)]
    assert_png(save_heatmap_grid(panels, [f"film {i}" for i in range(5)], tmp_path / "grid.png", ncols=3))
    with pytest.raises(ValueError, match="2 captions for 5 panels"):
        save_heatmap_grid(panels, ["a", "b"], tmp_path / "bad.png")
