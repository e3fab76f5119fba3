"""SimCLR on a timm backbone: the contrastive loss and projection head come from ``lightly``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from lightning.pytorch import LightningModule
from torch import nn


class SimCLR(LightningModule):
    """A pooled-feature backbone, an MLP head and the NT-Xent loss between two views of each film.

    Args:
        backbone: a timm model built with ``num_classes=0`` (returns pooled features).
        mean: input normalisation mean the backbone expects (as in the detector's pre-processor).
        std: input normalisation std.
        hidden_dim: hidden width of the projection head.
        output_dim: projection dimension the loss compares.
        temperature: NT-Xent temperature.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.

    Attributes:
        epoch_losses: mean training loss of each finished epoch.
        seen: sample indices of every film a training step used.
    """

    def __init__(
        self,
        backbone: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        hidden_dim: int = 512,
        output_dim: int = 128,
        temperature: float = 0.5,
        lr: float = 3e-4,
        weight_decay: float = 1e-6,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = SimCLRProjectionHead(backbone.num_features, hidden_dim, output_dim)
        self.criterion = NTXentLoss(temperature=temperature)
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std)).view(1, -1, 1, 1), persistent=False)
        self.lr, self.weight_decay = lr, weight_decay
        self.epoch_losses: list[float] = []
        self.seen: set[int] = set()
        self._loss_sum, self._loss_count = 0.0, 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Projections of a batch of [0, 1] images."""
        return self.head(self.backbone((images - self.mean) / self.std))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        first, second, index = batch
        loss = self.criterion(self(first), self(second))
        self.seen.update(int(i) for i in index)
        self._loss_sum, self._loss_count = (
            self._loss_sum + float(loss.detach()) * len(index),
            self._loss_count + len(index),
        )
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(index))
        return loss

    def on_train_epoch_end(self) -> None:
        self.epoch_losses.append(self._loss_sum / max(self._loss_count, 1))
        self._loss_sum, self._loss_count = 0.0, 0

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
