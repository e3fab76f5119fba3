"""Phantom films for detector tests: normal films, one with a bright blob pasted in, and Lightning fit/predict."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from anomalib.models import AnomalibModule
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

from cxrad.data.items import CxrBatch
from cxrad.data.metadata import MetadataEncoder
from cxrad.data.phantom import render_film
from cxrad.data.synthetic import SyntheticConfig


class Films(NamedTuple):
    """``(N, 3, S, S)`` images in [0, 1] and their ``(N, M)`` encoded metadata."""

    image: torch.Tensor
    metadata: torch.Tensor


def normal_films(n: int, size: int, seed: int = 0) -> Films:
    """``n`` normal phantom films (PA, alternating sex, ages 30-70), each a different patient."""
    rng = np.random.default_rng(seed)
    cfg = SyntheticConfig(image_size=size, realism="simple")  # the mechanics need the simple, uniform phantom
    rows = [(30.0 + 40.0 * k / max(n - 1, 1), "MF"[k % 2], "PA") for k in range(n)]
    images = [render_film(rng, size, age, sex, view, [], cfg)[0] for age, sex, view in rows]
    image = torch.from_numpy(np.stack(images)).float().div(255).unsqueeze(1).expand(-1, 3, -1, -1)
    return Films(image.contiguous(), MetadataEncoder().encode_many(rows))


def paste_blob(films: Films, center_yx: tuple[int, int], radius: float) -> tuple[Films, torch.Tensor]:
    """The films with a bright Gaussian blob (a dense lesion) added at ``center_yx``, and its boolean mask."""
    size = films.image.shape[-1]
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    distance2 = (y - center_yx[0]) ** 2 + (x - center_yx[1]) ** 2
    blob = torch.exp(-distance2 / (2 * (radius / 2) ** 2))
    image = (films.image + 0.8 * blob).clamp(0, 1)
    return Films(image, films.metadata), distance2 <= radius**2


def loader(films: Films, batch_size: int = 8) -> DataLoader:
    """Batches of cxrad's batch class (labels all normal), as the pipeline's loaders give them."""
    batches = [
        CxrBatch(
            image=films.image[start : start + batch_size],
            gt_label=torch.zeros(len(films.image[start : start + batch_size]), dtype=torch.bool),
            metadata=films.metadata[start : start + batch_size],
        )
        for start in range(0, len(films.image), batch_size)
    ]
    return DataLoader(batches, batch_size=None)


def trainer(max_epochs: int = 1) -> Trainer:
    return Trainer(
        accelerator="cpu",
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


def predict(model: AnomalibModule, films: Films) -> tuple[torch.Tensor, torch.Tensor]:
    """Film scores ``(N,)`` and anomaly maps ``(N, S, S)`` through Lightning's predict loop."""
    outputs = trainer().predict(model, loader(films), return_predictions=True)
    scores = torch.cat([batch.pred_score.reshape(-1) for batch in outputs])
    maps = torch.cat([batch.anomaly_map.reshape(-1, *batch.anomaly_map.shape[-2:]) for batch in outputs])
    return scores, maps
