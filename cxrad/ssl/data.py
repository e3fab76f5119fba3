"""Pairs of augmented views of preprocessed films, for contrastive pretraining."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision.transforms import v2

from cxrad.data.dataset import CxrDataset
from cxrad.preprocessing import PreprocessConfig

TwoViews = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class TwoViewFilms(Dataset):
    """Each film preprocessed as ``cxrad.run`` sees it, then augmented twice: ``(view, view, sample_index)``.

    Args:
        table: rows of the sample table (the index is the film's sample index).
        preprocess: the preprocessing settings of the detector the weights are meant for.
        augment: the random transform of one view.
        skip_log: CSV that films failing to decode are appended to (they are then left out of their batch).
    """

    def __init__(
        self, table: pd.DataFrame, preprocess: PreprocessConfig, augment: v2.Compose, skip_log: Path | None = None
    ) -> None:
        self.films = CxrDataset(table, preprocess, skip_log)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.films)

    def __getitem__(self, index: int) -> TwoViews | None:
        item = self.films[index]
        if item is None:
            return None
        image = item.image.as_subclass(torch.Tensor)
        return self.augment(image), self.augment(image), item.sample_index


def _collate_decoded(pairs: Sequence[TwoViews | None]) -> TwoViews:
    return default_collate([pair for pair in pairs if pair is not None])


def two_view_loader(films: TwoViewFilms, batch_size: int, num_workers: int, seed: int) -> DataLoader:
    """Shuffled batches of view pairs; the last incomplete batch is dropped (a batch of one has no negatives).

    Raises:
        ValueError: when there are fewer films than one batch.
    """
    if len(films) < batch_size:
        msg = (
            f"only {len(films)} normal training films for ssl.batch_size={batch_size}; lower ssl.batch_size "
            "(contrastive learning needs the other films of a batch as negatives) or add films"
        )
        raise ValueError(msg)
    return DataLoader(
        films,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=num_workers,
        collate_fn=_collate_decoded,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=num_workers > 0,
    )
