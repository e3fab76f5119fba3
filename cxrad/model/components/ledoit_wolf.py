"""Streaming Ledoit-Wolf Gaussians and Mahalanobis distances, one Gaussian per position.

sklearn's ``LedoitWolf`` needs every training vector in one array. The shrinkage intensity it computes depends
on the fourth moments of the centred vectors, ``sum_k ||x_k - mean||^4``, which looks as if it needed a second
pass once the mean is known. Expanding ``||y - d||^4`` with ``y = x - shift`` and ``d = mean - shift`` shows
it only needs sums that can be accumulated batch by batch: ``sum ||y||^4``, ``sum ||y||^2 y``, ``sum y y^T``,
``sum ||y||^2`` and ``sum y``. So this is sklearn's estimator exactly (checked against it in the tests), in
torch, batched over positions, in float64, with memory that does not grow with the training set. It is
written here rather than calling sklearn because the per-position maps of a whole training set do not fit in
memory at NIH scale (50k films x 49 positions x 320 channels).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

# Added to the shrunk covariance, relative to its mean variance: constant channels (dead activations) would
# otherwise leave it singular when the estimated shrinkage is 0.
RIDGE = 1e-6


class ShrunkGaussian(NamedTuple):
    """Per-position mean ``(P, C)``, Ledoit-Wolf covariance ``(P, C, C)`` and shrinkage ``(P,)``, float64."""

    mean: torch.Tensor
    covariance: torch.Tensor
    shrinkage: torch.Tensor


class StreamingLedoitWolf:
    """Running sums of ``(B, P, C)`` vectors from which each position's Ledoit-Wolf Gaussian follows.

    Example:
        >>> stats = StreamingLedoitWolf()
        >>> for _ in range(3):
        ...     stats.update(torch.randn(8, 2, 4))
        >>> gaussian = stats.finalize()
        >>> gaussian.mean.shape, gaussian.covariance.shape, gaussian.shrinkage.shape
        (torch.Size([2, 4]), torch.Size([2, 4, 4]), torch.Size([2]))
    """

    def __init__(self) -> None:
        self.count = 0
        self.shift: torch.Tensor | None = None  # (P, C), the first batch's mean: keeps the sums well conditioned
        self.total: torch.Tensor | None = None  # (P, C): sum y
        self.outer: torch.Tensor | None = None  # (P, C, C): sum y y^T
        self.weighted: torch.Tensor | None = None  # (P, C): sum ||y||^2 y
        self.square: torch.Tensor | None = None  # (P,): sum ||y||^2
        self.fourth: torch.Tensor | None = None  # (P,): sum ||y||^4

    def update(self, vectors: torch.Tensor) -> None:
        """Add a batch of vectors ``(B, P, C)`` (``B`` films, ``P`` positions, ``C`` channels)."""
        vectors = vectors.detach().double().cpu()
        if self.shift is None:
            self.shift = vectors.mean(0)
            positions, channels = self.shift.shape
            self.total = torch.zeros(positions, channels, dtype=torch.float64)
            self.outer = torch.zeros(positions, channels, channels, dtype=torch.float64)
            self.weighted = torch.zeros_like(self.total)
            self.square = torch.zeros(positions, dtype=torch.float64)
            self.fourth = torch.zeros_like(self.square)
        shifted = (vectors - self.shift).transpose(0, 1)  # (P, B, C)
        norms = shifted.square().sum(-1)  # (P, B)
        self.count += shifted.shape[1]
        self.total += shifted.sum(1)
        self.outer.baddbmm_(shifted.transpose(1, 2), shifted)
        self.weighted += (norms.unsqueeze(-1) * shifted).sum(1)
        self.square += norms.sum(1)
        self.fourth += norms.square().sum(1)

    def finalize(self) -> ShrunkGaussian:
        """Each position's mean, shrunk covariance and shrinkage, as ``sklearn.covariance.LedoitWolf`` fits them.

        Raises:
            ValueError: with fewer than 2 vectors (no covariance can be estimated).
        """
        if self.count < 2:
            msg = f"a Ledoit-Wolf Gaussian needs at least 2 training films, got {self.count}; check the train split"
            raise ValueError(msg)
        n = self.count
        offset = self.total / n  # d = mean - shift, (P, C)
        scatter = self.outer - n * offset.unsqueeze(2) * offset.unsqueeze(1)  # sum z z^T, z = x - mean
        empirical = scatter / n  # sklearn's biased empirical covariance
        fourth = self._centred_fourth(offset)
        return ShrunkGaussian(self.shift + offset, *ledoit_wolf_shrink(empirical, fourth, n))

    def _centred_fourth(self, offset: torch.Tensor) -> torch.Tensor:
        """``sum_k ||y_k - d||^4`` per position from the running sums (expanded; see the module docstring)."""
        n, d2 = self.count, offset.square().sum(-1)  # (P,)
        quadratic = torch.einsum("pc,pcd,pd->p", offset, self.outer, offset)
        return (
            self.fourth
            + n * d2.square()
            + 4 * quadratic
            + 2 * d2 * self.square
            - 4 * (offset * self.weighted).sum(-1)
            - 4 * d2 * (offset * self.total).sum(-1)
        )


def ledoit_wolf_shrink(empirical: torch.Tensor, fourth: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shrunk covariance and shrinkage from the biased covariance ``(P, C, C)`` and ``sum ||z||^4`` ``(P,)``.

    The formulas of ``sklearn.covariance.ledoit_wolf_shrinkage``: the target is ``mu I`` with ``mu`` the mean
    variance, and the intensity is ``min(beta, delta) / delta``.
    """
    channels = empirical.shape[-1]
    trace = empirical.diagonal(dim1=1, dim2=2).sum(-1)  # (P,)
    mu = trace / channels
    delta_sum = empirical.square().sum((1, 2))  # ||S||_F^2
    beta = (fourth / count - delta_sum) / (channels * count)
    delta = (delta_sum - 2 * mu * trace + channels * mu.square()) / channels
    beta = torch.minimum(beta, delta)
    shrinkage = torch.where(delta > 0, beta / delta.clamp_min(torch.finfo(delta.dtype).tiny), 0.0)
    if channels == 1:  # sklearn: a single feature is never shrunk
        shrinkage = torch.zeros_like(shrinkage)
    identity = torch.eye(channels, dtype=empirical.dtype)
    target = mu[:, None, None] * identity
    covariance = (1 - shrinkage)[:, None, None] * empirical + shrinkage[:, None, None] * target
    return covariance, shrinkage


def precision(covariance: torch.Tensor) -> torch.Tensor:
    """Inverse of each ``(P, C, C)`` covariance, float32, after a tiny ridge (:data:`RIDGE` x the mean variance)."""
    channels = covariance.shape[-1]
    mu = covariance.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(torch.finfo(covariance.dtype).tiny)
    ridged = covariance + (RIDGE * mu)[:, None, None] * torch.eye(channels, dtype=covariance.dtype)
    return torch.linalg.inv(ridged).float()


def mahalanobis(vectors: torch.Tensor, mean: torch.Tensor, inv_covariance: torch.Tensor) -> torch.Tensor:
    """Mahalanobis distance ``(B, P)`` of ``(B, P, C)`` vectors to each position's Gaussian.

    Example:
        >>> distance = mahalanobis(torch.ones(1, 1, 2), torch.zeros(1, 2), torch.eye(2)[None])
        >>> round(distance.item(), 4)
        1.4142
    """
    diff = vectors - mean.to(vectors)
    squared = (torch.einsum("bpc,pcd->bpd", diff, inv_covariance.to(vectors)) * diff).sum(-1)
    return squared.clamp_min(0).sqrt()
