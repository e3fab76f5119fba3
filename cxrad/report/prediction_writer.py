"""Rate films as their batches are predicted and write each film's heat-map overlay right away.

Used by ``python -m cxrad.predict``: nothing but one row per film is kept in memory, so a folder of tens of
thousands of films needs no more memory than one batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from cxrad.data.dataset import CxrDataset
from cxrad.preprocessing import DecodeError, PreprocessConfig
from cxrad.report.overlay import overlay_heatmap
from cxrad.trained_run import TrainedRun, to_threshold_units

DISPLAY_SIZE = 256


@dataclass
class Rater:
    """Raw scores -> scores in the threshold's units (calibrated when the run was) and the cut per film."""

    run_dir: Path
    run: TrainedRun
    films: pd.DataFrame

    def __call__(
        self, raw: pd.Series, anomaly_maps: torch.Tensor | None = None, metadata: torch.Tensor | None = None
    ) -> pd.DataFrame:
        """``raw_score``, ``score``, ``threshold`` and ``pred_label`` for films indexed like ``films``.

        ``anomaly_maps`` and ``metadata`` (the model's outputs, in ``raw``'s order) are needed by runs whose
        conditioning re-scores the maps (``normative``, ``film_normative``).
        """
        rows = self.films.loc[raw.index]
        score = to_threshold_units(self.run_dir, self.run.cfg, raw, rows, anomaly_maps, metadata)
        cut = self.run.threshold.cuts(rows)
        rated = pd.DataFrame({"raw_score": raw, "score": score, "threshold": cut}, index=raw.index)
        rated["pred_label"] = (rated["score"].to_numpy() >= cut).astype(int)
        return rated


def caption(row: pd.Series) -> str:
    """Overlay caption: score against the cut, then the metadata the model was given.

    Example:
        >>> caption(pd.Series({"score": 2.5, "threshold": 2.0, "pred_label": 1, "age": 63.0, "sex": "F", "view": "AP"}))
        'score 2.5 >= cut 2: ABNORMAL\\n63 y, F, AP'
    """
    verdict = (
        f"score {row['score']:.4g} >= cut {row['threshold']:.4g}: ABNORMAL"
        if row["pred_label"]
        else (f"score {row['score']:.4g} < cut {row['threshold']:.4g}: normal")
    )
    age = "age unknown" if pd.isna(row["age"]) else f"{row['age']:.0f} y"
    return f"{verdict}\n{age}, {row['sex']}, {row['view']}"


class PredictionWriter(Callback):
    """Lightning callback: rates each predicted batch and saves one overlay per film into ``heatmap_dir``."""

    def __init__(self, rater: Rater, preprocess: PreprocessConfig, heatmap_dir: Path | None) -> None:
        self.rater = rater
        # Films are shown through the run's own crop and CLAHE, decoded at display size (not upscaled).
        display = PreprocessConfig(**{**vars(preprocess), "image_size": max(DISPLAY_SIZE, preprocess.image_size)})
        self.films = CxrDataset(rater.films, display)
        self.heatmap_dir = heatmap_dir
        self.rows: list[pd.DataFrame] = []

    def on_predict_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:  # noqa: ANN001, E501
        del trainer, pl_module, batch, batch_idx, dataloader_idx
        index = outputs.sample_index.detach().reshape(-1).cpu().tolist()
        raw = pd.Series(outputs.pred_score.detach().reshape(-1).float().cpu().numpy(), index=index)
        if not np.isfinite(raw.to_numpy()).all():
            msg = f"non-finite anomaly scores for {self.rater.films.loc[raw.index, 'image_path'].tolist()}"
            raise FloatingPointError(msg)
        rated = self.rater(raw, outputs.anomaly_map, outputs.metadata)
        rated["heatmap"] = ""
        if self.heatmap_dir is not None and outputs.anomaly_map is not None:
            maps = zip(index, outputs.anomaly_map, strict=True)
            rated["heatmap"] = [self._overlay(film_index, rated.loc[film_index], amap) for film_index, amap in maps]
        self.rows.append(rated)

    def _overlay(self, film_index: int, rated: pd.Series, anomaly_map: torch.Tensor) -> str:
        try:
            item = self.films[self.films.table.index.get_loc(film_index)]
        except DecodeError:  # decoded for scoring but not now (the file changed meanwhile): no overlay
            return ""
        film = (item.image[0].numpy() * 255).round().astype(np.uint8)
        row = pd.concat([self.films.table.loc[film_index, ["age", "sex", "view"]], rated])
        roi_mask = None if item.roi_mask is None else item.roi_mask.numpy()
        values = anomaly_map.squeeze().float().cpu().numpy()
        panel = overlay_heatmap(film, values, caption=caption(row), roi_mask=roi_mask)
        self.heatmap_dir.mkdir(parents=True, exist_ok=True)
        path = self.heatmap_dir / f"{film_index:05d}_{Path(self.films.table.loc[film_index, 'image_path']).stem}.png"
        cv2.imwrite(str(path), cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
        return str(path)

    def table(self) -> pd.DataFrame:
        """Every rated film so far (``raw_score``, ``score``, ``threshold``, ``pred_label``, ``heatmap``)."""
        columns = ["raw_score", "score", "threshold", "pred_label", "heatmap"]
        return pd.concat(self.rows) if self.rows else pd.DataFrame(columns=columns)
