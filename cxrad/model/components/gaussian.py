"""Streaming per-position Gaussian statistics for PaDiM.

anomalib's ``MultiVariateGaussian.fit`` needs every training embedding stacked in memory (N x C x H x W floats,
~6 GB for 5,000 films at 224 px with resnet18); PaDiM only needs each position's mean and covariance. This
accumulates their sufficient statistics batch by batch in float64 (around a shift taken from the first batch,
so the subtraction ``sum xx^T - n mean mean^T`` does not cancel catastrophically) and finishes with the same
regularisation anomalib applies (+0.01 I on the covariance, +1e-5 I before the inverse), so the result equals
the batch computation.
"""

from __future__ import annotations

import torch


class StreamingGaussian:
    """Running count, sum and sum of outer products of ``(B, C, H, W)`` embeddings, per position.

    Example:
        >>> stats = StreamingGaussian()
        >>> for _ in range(3):
        ...     stats.update(torch.randn(4, 2, 3, 3))
        >>> mean, inv_covariance = stats.finalize()
        >>> mean.shape, inv_covariance.shape
        (torch.Size([2, 9]), torch.Size([9, 2, 2]))
    """

    def __init__(self) -> None:
        self.count = 0
        self.shift: torch.Tensor | None = None  # (C, P)
        self.total: torch.Tensor | None = None  # (C, P): sum of shifted embeddings
        self.outer: torch.Tensor | None = None  # (P, C, C): sum of shifted outer products

    def update(self, embedding: torch.Tensor) -> None:
        """Add a batch of embeddings ``(B, C, H, W)``."""
        vectors = embedding.detach().flatten(2).double().cpu()  # (B, C, P)
        if self.shift is None:
            self.shift = vectors.mean(0)
            self.total = torch.zeros_like(self.shift)
            channels, positions = self.shift.shape
            self.outer = torch.zeros(positions, channels, channels, dtype=torch.float64)
        shifted = vectors - self.shift
        self.count += len(shifted)
        self.total += shifted.sum(0)
        per_position = shifted.permute(2, 1, 0)  # (P, C, B)
        self.outer.baddbmm_(per_position, per_position.transpose(1, 2))  # in place: no (P, C, C) temporary

    def merge(self, total: torch.Tensor, outer: torch.Tensor, count: int) -> None:
        """Replace the statistics by summed ones (e.g. all-reduced over ranks sharing the same shift)."""
        self.total, self.outer, self.count = total, outer, count

    def finalize(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``mean (C, P)`` and ``inv_covariance (P, C, C)`` as anomalib's ``MultiVariateGaussian`` computes them."""
        if self.count < 2:
            msg = f"PaDiM needs at least 2 training films for a covariance, got {self.count}; check the train split"
            raise ValueError(msg)
        shifted_mean = (self.total / self.count).T.unsqueeze(2)  # (P, C, 1)
        # In place on the accumulated outer products (finalize ends the stream): the (P, C, C) arrays are the
        # largest thing PaDiM holds, so no second and third copy of them.
        covariance = self.outer.baddbmm_(shifted_mean, shifted_mean.transpose(1, 2), alpha=-self.count)
        covariance /= self.count - 1
        covariance.diagonal(dim1=1, dim2=2).add_(0.01 + 1e-5)
        self.outer = None
        inv_covariance = torch.linalg.inv(covariance).float()
        return (self.shift + shifted_mean.squeeze(2).T).float(), inv_covariance
