"""Torch dataset over the sample table: each row becomes a :class:`CxrItem`.

A film that passed the pre-flight checks but still fails to decode does not stop a run: given the run's skip
log, the dataset records it there and returns ``None``, the collate function drops it, and the loader skips a
batch left empty. Only decoding is guarded this way; any other error still stops the run.

With ``preprocessing.cache`` on, a film preprocessed before (same settings, same file) is read from
:class:`~cxrad.preprocessing.cache.PreprocessCache` instead of being decoded again; its mask is still drawn
from the row and only resized and cropped, so both paths return the same item.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset
from torchvision.tv_tensors import Image, Mask

from cxrad.data.checks import record_skip
from cxrad.data.items import CxrBatch, CxrItem
from cxrad.data.metadata import MetadataEncoder
from cxrad.preprocessing import (
    CachedFilm,
    DecodeError,
    PreprocessCache,
    PreprocessConfig,
    build_mask_geometry,
    build_transform,
    read_grayscale,
)
from cxrad.preprocessing.roi import find_roi


def parse_boxes(text: str) -> list[tuple[str, float, float, float, float]]:
    """Parse ``'Kind:x,y,w,h;...'`` into ``(kind, x, y, w, h)`` tuples.

    Example:
        >>> parse_boxes("Nodule:10,20,5,6")
        [('Nodule', 10.0, 20.0, 5.0, 6.0)]
    """
    boxes = []
    for part in filter(None, str(text).split(";")):
        kind, coords = part.rsplit(":", 1)
        x, y, w, h = (float(v) for v in coords.split(","))
        boxes.append((kind, x, y, w, h))
    return boxes


def lesion_mask(row: pd.Series, shape: tuple[int, int]) -> np.ndarray:
    """Ground-truth mask in the file's frame: the mask file if any, else the boxes filled, else zeros."""
    if row.mask_path:
        mask = cv2.imread(row.mask_path, cv2.IMREAD_GRAYSCALE)
        if mask is None:
            msg = f"cannot read mask {row.mask_path} for {row.image_path}; fix or clear its mask_path"
            raise ValueError(msg)
        return cv2.resize(mask, shape[::-1], interpolation=cv2.INTER_NEAREST)
    mask = np.zeros(shape, dtype=np.uint8)
    if row.boxes and row.boxes_frame:
        scale_y, scale_x = shape[0] / row.boxes_frame, shape[1] / row.boxes_frame
        for _, x, y, w, h in parse_boxes(row.boxes):
            p0 = (int(x * scale_x), int(y * scale_y))
            p1 = (int((x + w) * scale_x), int((y + h) * scale_y))
            cv2.rectangle(mask, p0, p1, 255, thickness=-1)
    return mask


class CxrDataset(Dataset):
    """Films of one split, preprocessed, with label, mask and encoded metadata.

    Args:
        table: rows of the sample table.
        preprocess: the preprocessing settings.
        skip_log: CSV that films failing to decode are appended to, ``None`` being returned for them; without
            it a film that fails to decode raises :class:`~cxrad.preprocessing.DecodeError` (single-film use).
        encoder: the metadata encoding (default: the base PA/AP one); pass one encoder built from the whole
            sample table (:meth:`MetadataEncoder.for_table`) so that every split encodes alike.
    """

    def __init__(
        self,
        table: pd.DataFrame,
        preprocess: PreprocessConfig,
        skip_log: Path | None = None,
        encoder: MetadataEncoder | None = None,
    ) -> None:
        self.table = table
        self.transform = build_transform(preprocess)
        self.mask_geometry = build_mask_geometry(preprocess)
        self.cache = PreprocessCache(preprocess.cache_dir, preprocess) if preprocess.cache else None
        self.encoder = encoder or MetadataEncoder()
        self.skip_log = skip_log
        self.roi = preprocess.roi != "none"

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> CxrItem | None:
        row = self.table.iloc[index]
        key = self.cache.key(row.image_path) if self.cache else None
        cached = self.cache.get(key) if key else None
        film = self._preprocess(row, key) if cached is None else self._from_cache(row, cached)
        if film is None:
            return None
        image, mask, roi_mask = film
        # In numpy, not torch: torch's multi-threaded float() of one small image can wait ~10 ms on thread
        # hand-offs when the CPUs are busy (main-process loading); the values are the same.
        chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / np.float32(255)
        return CxrItem(
            image=Image(torch.from_numpy(chw)),
            gt_label=torch.tensor(int(row.label)),
            gt_mask=Mask(torch.from_numpy(mask > 0)),
            image_path=str(row.image_path),
            metadata=self.encoder.encode_row(row),
            sample_index=torch.tensor(int(row.name)),
            roi_mask=None if roi_mask is None else torch.from_numpy(np.ascontiguousarray(roi_mask, dtype=bool)),
        )

    def _preprocess(self, row: pd.Series, key: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
        """Decode and transform the film (storing it under ``key`` if given); ``None`` when it fails to decode."""
        try:
            gray = read_grayscale(row.image_path)
        except (DecodeError, OSError, cv2.error) as error:
            if self.skip_log is None:
                raise
            record_skip(self.skip_log, str(row.image_path), "decode_failed", str(error))
            return None
        out = self.transform(image=gray, mask=lesion_mask(row, gray.shape))
        image, roi_mask = out["image"], None
        if self.roi:
            roi = find_roi(image[..., 0], row.image_path)
            image, roi_mask = cv2.cvtColor(roi.image, cv2.COLOR_GRAY2RGB), roi.thorax
        if key:  # the 3 channels are copies of one (ToRGB): store one
            self.cache.put(key, CachedFilm(np.ascontiguousarray(image[..., 0]), gray.shape, roi_mask))
        return image, out["mask"], roi_mask

    def _from_cache(self, row: pd.Series, film: CachedFilm) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The cached film in 3 channels, with its mask drawn at the decoded size and put through the geometry."""
        mask = self.mask_geometry(image=lesion_mask(row, film.source_shape))["image"]
        return cv2.cvtColor(film.image, cv2.COLOR_GRAY2RGB), mask, film.roi_mask


def collate_films(items: Sequence[CxrItem | None]) -> CxrBatch | None:
    """:meth:`CxrBatch.collate` over the films that decoded; ``None`` when none did."""
    films = [item for item in items if item is not None]
    return CxrBatch.collate(films) if films else None


class FilmLoader(DataLoader):
    """DataLoader that skips batches in which no film decoded (see :func:`collate_films`)."""

    def __iter__(self) -> Iterator[CxrBatch]:
        return (batch for batch in super().__iter__() if batch is not None)


def make_loader(
    table: pd.DataFrame,
    preprocess: PreprocessConfig,
    batch_size: int,
    num_workers: int,
    shuffle: bool,
    seed: int,
    skip_log: Path | None = None,
    encoder: MetadataEncoder | None = None,
) -> DataLoader:
    """DataLoader collating :class:`CxrItem` into :class:`CxrBatch`, dropping films that fail to decode."""
    return FilmLoader(
        CxrDataset(table, preprocess, skip_log, encoder),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=collate_films,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=num_workers > 0,
    )


def make_loaders(
    samples: pd.DataFrame, preprocess: PreprocessConfig, data: DictConfig, seed: int, skip_log: Path | None = None
) -> dict[str, DataLoader]:
    """One loader per split (train shuffled), indexed like ``samples``; undecodable films go to ``skip_log``.

    All splits share one encoder of the whole table, so extra views or covariates encode alike in every split.
    """
    encoder = MetadataEncoder.for_table(samples)
    return {
        split: make_loader(
            samples[samples.split == split],
            preprocess,
            data.batch_size,
            data.num_workers,
            shuffle=split == "train",
            seed=seed,
            skip_log=skip_log,
            encoder=encoder,
        )
        for split in ("train", "val", "test")
    }
