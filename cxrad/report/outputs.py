"""Write a run's contract files: ``metrics.json``, ``predictions.csv``, plots and heatmap overlays."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from cxrad.data.dataset import CxrDataset
from cxrad.data.metadata import extra_covariates
from cxrad.metrics.nodules import nodule_size_mm
from cxrad.preprocessing import PreprocessConfig
from cxrad.report.overlay import overlay_heatmap, panel_caption
from cxrad.report.plots import plot_pr, plot_roc, plot_score_distribution, save_heatmap_grid
from cxrad.threshold import Threshold

DISPLAY_SIZE = 256
PREDICTION_COLUMNS = (
    "image_path",
    "label",
    "score",
    "pred_label",
    "age",
    "sex",
    "view",
    "finding_labels",
    "patient_id",
    "nodule_size_mm",
)
VAL_SCORE_COLUMNS = (
    "sample_index",
    "image_path",
    "label",
    "val_role",
    "raw_score",
    "score",
    "pred_label",
    "map_max",
    "age",
    "sex",
    "view",
    "patient_id",
)


def _atomic_write(path: Path, write: callable) -> None:
    """Write through a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: Path, payload: dict) -> None:
    _atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=2, allow_nan=False)))


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    _atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def predictions_table(samples: pd.DataFrame, score: pd.Series, threshold: Threshold) -> pd.DataFrame:
    """Test films with their raw score and the label predicted at ``threshold``."""
    frame = samples.loc[score.index].copy()
    frame["score"] = score
    frame["pred_label"] = (frame["score"].to_numpy() >= threshold.cuts(frame)).astype(int)
    frame["nodule_size_mm"] = nodule_size_mm(frame)
    return frame[[*PREDICTION_COLUMNS, *extra_covariates(frame)]]  # site/scanner/portable get subgroups


def val_scores_table(
    samples: pd.DataFrame, raw: pd.Series, score: pd.Series, map_max: pd.Series, threshold: Threshold
) -> pd.DataFrame:
    """Every validation film: role, raw and thresholded (calibrated) score, flag, map maximum, metadata.

    ``score`` is in the units the threshold was fitted in (equal to ``raw_score`` without score calibration), so
    threshold rules can be refitted later from the ``calibration`` rows of ``val_scores.csv`` alone; ``reference``
    rows (the films a conditioning option was fitted on) have no out-of-sample score and are left blank.
    """
    frame = samples.loc[raw.index].copy()
    if "val_role" not in frame.columns:
        frame["val_role"] = ""
    frame["sample_index"] = raw.index
    frame["raw_score"] = raw
    frame["score"] = score.reindex(raw.index)
    values = frame["score"].to_numpy(np.float64)
    flags = pd.array((values >= threshold.cuts(frame)).astype(int), dtype="Int64")
    flags[np.isnan(values)] = pd.NA
    frame["pred_label"] = flags
    frame["map_max"] = map_max.reindex(raw.index)
    return frame[[*VAL_SCORE_COLUMNS, *extra_covariates(frame)]]


def write_plots(out_dir: Path, predictions: pd.DataFrame, threshold: Threshold, title: str) -> dict[str, Path]:
    """ROC, PR and score-by-view plots; returns name -> path (also what trackers log)."""
    return {
        "roc": plot_roc(predictions, out_dir / "roc.png", f"ROC - {title}", threshold=threshold),
        "pr": plot_pr(predictions, out_dir / "pr.png", f"Precision-recall - {title}", threshold=threshold),
        "score_by_view": plot_score_distribution(predictions, threshold, out_dir / "score_by_view.png", title),
    }


def write_heatmaps(
    out_dir: Path,
    samples: pd.DataFrame,
    predictions: pd.DataFrame,
    maps: dict[int, np.ndarray],
    preprocess: PreprocessConfig,
) -> Path | None:
    """Overlay each extreme-scoring film's anomaly map; save panels and a grid (highest first)."""
    if not maps:
        return None
    heat_dir = out_dir / "heatmaps"
    heat_dir.mkdir(parents=True, exist_ok=True)
    dataset = CxrDataset(samples, preprocess)
    order = predictions.loc[list(maps)].sort_values("score", ascending=False)
    panels = []
    for rank, (index, row) in enumerate(order.iterrows()):
        item = dataset[samples.index.get_loc(index)]
        film = (item.image[0].numpy() * 255).astype(np.uint8)
        mask = item.gt_mask.numpy().astype(np.uint8)
        roi_mask = None if item.roi_mask is None else item.roi_mask.numpy().astype(np.uint8)
        if film.shape[0] < DISPLAY_SIZE:  # small inputs are upscaled so captions stay in proportion
            film = cv2.resize(film, (DISPLAY_SIZE, DISPLAY_SIZE), interpolation=cv2.INTER_CUBIC)
            mask = cv2.resize(mask, (DISPLAY_SIZE, DISPLAY_SIZE), interpolation=cv2.INTER_NEAREST)
        caption = panel_caption(row.score, int(row.label), row.finding_labels, row.age, row.sex, row.view)
        panel = overlay_heatmap(film, maps[index], mask=mask, caption=caption, roi_mask=roi_mask)
        panels.append(panel)
        name = f"{rank:02d}_{Path(row.image_path).stem}.png"
        _save_rgb(heat_dir / name, panel)
    return save_heatmap_grid(panels, None, out_dir / "heatmaps" / "grid.png", ncols=min(4, len(panels)))


def _save_rgb(path: Path, rgb: np.ndarray) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


__all__ = [
    "predictions_table",
    "val_scores_table",
    "write_csv",
    "write_heatmaps",
    "write_json",
    "write_plots",
    "write_run_figures",
]


def write_run_figures(
    out_dir: Path,
    samples: pd.DataFrame,
    predictions: pd.DataFrame,
    threshold: Threshold,
    maps: dict[int, np.ndarray],
    preprocess: PreprocessConfig,
) -> dict[str, Path]:
    """All of a run's figures; returns name -> path for trackers."""
    title = f"{len(predictions)} test films"
    figures = write_plots(out_dir, predictions, threshold, title)
    grid = write_heatmaps(out_dir, samples, predictions, maps, preprocess)
    return {**figures, **({"heatmaps": grid} if grid else {})}
