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
    """Mixin for memory-bank models: the training pass also records each film's metadata for FiLM fitting."""

    def training_step(self, batch: Batch, *args: object, **kwargs: object) -> torch.Tensor:
        del args, kwargs
        self.train_metadata.append(batch.metadata.detach().cpu())
        with metadata_of(self.model, batch):
            self.model(batch.image)
        return torch.tensor(0.0, requires_grad=True, device=self.device)

    def pop_train_metadata(self) -> torch.Tensor:
        if not self.train_metadata:
            msg = "no training metadata recorded; the train split was empty"
            raise ValueError(msg)
        metadata = torch.cat(self.train_metadata)
        self.train_metadata.clear()
        return metadata
