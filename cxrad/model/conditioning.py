"""Metadata in anomalib's steps.

anomalib's steps call ``self.model(batch.image)`` only. These pieces hand ``batch.metadata`` to the torch
model for the duration of one forward pass, so a FiLM layer inside it can use each film's own metadata in
fit, validation, test and predict alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from anomalib.data import Batch
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torch import nn

from cxrad.model.components.distributed import all_reduce_sum, gather_rows


@contextlib.contextmanager
def metadata_of(model: nn.Module, batch: Batch) -> Iterator[None]:
    """Expose ``batch.metadata`` as ``model.metadata`` during one forward pass."""
    model.metadata = getattr(batch, "metadata", None)
    try:
        yield
    finally:
        model.metadata = None


def apply_film(model: nn.Module, features: torch.Tensor, name: str) -> torch.Tensor:
    """``model.film(features, model.metadata)`` when the model has a FiLM, else ``features`` unchanged.

    Raises:
        ValueError: naming the model when a conditioned model gets a batch without metadata.
    """
    film = getattr(model, "film", None)  # a submodule set by the Lightning module, or absent
    if film is None:
        return features
    if getattr(model, "metadata", None) is None:
        msg = f"metadata-conditioned {name} got a batch without metadata; use cxrad's CxrBatch loaders"
        raise ValueError(msg)
    return film(features, model.metadata)


class MetadataSteps:
    """Mixin for anomalib modules: evaluation steps pass metadata to ``self.model``."""

    model: nn.Module

    def _scored(self, batch: Batch) -> STEP_OUTPUT:
        with metadata_of(self.model, batch):
            predictions = self.model(batch.image)
        return batch.update(**predictions._asdict())

    def validation_step(self, batch: Batch, *args: object, **kwargs: object) -> STEP_OUTPUT:
        del args, kwargs
        return self._scored(batch)

    def test_step(self, batch: Batch, *args: object, **kwargs: object) -> STEP_OUTPUT:
        del args, kwargs
        return self._scored(batch)

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> STEP_OUTPUT:
        del batch_idx, dataloader_idx
        return self._scored(batch)


class MemoryBankMetadata(MetadataSteps):
    """Mixin for memory-bank models: the training pass also records each film's metadata for FiLM fitting.

    After each forward pass the model's ``_drain`` moves what anomalib's forward stored (and the films' metadata)
    into its streaming bank or statistics, so nothing accumulates over the epoch.
    """

    def training_step(self, batch: Batch, *args: object, **kwargs: object) -> torch.Tensor:
        del args, kwargs
        self.train_metadata.append(batch.metadata.detach().cpu())
        with metadata_of(self.model, batch):
            self.model(batch.image)
        self._drain()
        return torch.tensor(0.0, requires_grad=True, device=self.device)

    def _drain(self) -> None:
        raise NotImplementedError

    def pop_train_metadata(self) -> torch.Tensor:
        if not self.train_metadata:
            msg = "no training metadata recorded; the train split was empty"
            raise ValueError(msg)
        metadata = torch.cat(self.train_metadata)
        self.train_metadata.clear()
        return metadata


class FilmWarmup:
    """Holds the first training films' feature maps until a closed-form FiLM is fitted on them.

    Streaming memory-bank fits see each film once and must not keep them all, yet FiLM has to be fitted before
    the bank or Gaussians see conditioned features. The first ``n_films`` films (a random subset: the train
    loader shuffles) are buffered; once enough arrived the FiLM is fitted on them and they are released in
    conditioned form. Later films are conditioned by the model's forward pass itself (the FiLM is fitted by
    then), so they pass straight through. Without a FiLM everything passes straight through.

    Under DDP (several ranks, each on its own shard) the FiLM is fitted on the films buffered on *all* ranks,
    so it is the same on every rank, and ``n_films`` counts films over all ranks; each rank gets back only its
    own films, conditioned. Without a process group the collectives are identities.
    """

    def __init__(self, film: nn.Module | None, n_films: int) -> None:
        self.film, self.n_films = film, n_films
        self.maps: list[torch.Tensor] = []
        self.metadata: list[torch.Tensor] = []

    @property
    def waiting(self) -> bool:
        return self.film is not None and not self.film.is_fitted

    def push(self, maps: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor | None:
        """Conditioned ``(B, C, H, W)`` maps ready for the bank, or ``None`` while still buffering."""
        if not self.waiting:
            return maps
        self.maps.append(maps.detach().cpu())
        self.metadata.append(metadata.detach().cpu())
        # release() is a collective under DDP, so every rank must decide to call it at the same step: decide on
        # the films buffered over all ranks (one scalar all-reduce per batch, during the warm-up only). Every
        # rank pushes the same number of batches (DistributedSampler pads the shards to equal length).
        return self.release() if self._buffered_everywhere() >= self.n_films else None

    def release(self) -> torch.Tensor | None:
        """Fit the FiLM on whatever is buffered and return those films conditioned (``None`` if nothing is).

        Under DDP every rank reaches this at the same step with films buffered (``push`` decides on a count
        equal on all ranks; ``fit`` runs on all ranks after equal-length shards), as the gathers require.
        """
        if not self.maps:
            return None
        maps, metadata = torch.cat(self.maps), torch.cat(self.metadata)
        self.maps, self.metadata = [], []
        every_maps = gather_rows(maps.flatten(1)).reshape(-1, *maps.shape[1:])  # all ranks' films, rank order
        device = next(self.film.buffers(), maps).device  # fit where the FiLM lives (GPU under a GPU trainer)
        self.film.fit(every_maps.to(device), gather_rows(metadata).to(device))
        return self.film(maps.to(device), metadata.to(device))  # this rank's films only: no film counted twice

    def _buffered_everywhere(self) -> int:
        """Films buffered over all ranks (here alone without a process group)."""
        (total,) = all_reduce_sum(torch.tensor(sum(len(m) for m in self.maps)))
        return int(total)
