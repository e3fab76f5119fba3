"""Greedy k-center coreset selection (the PatchCore subsampling step).

Written here because anomalib's ``KCenterGreedy`` recomputes full difference tensors at every step and selects
~10-13 points/s on 180k patches with 2 CPU cores, which makes even a small PatchCore fit take minutes. This
version keeps each point's squared distance to the coreset and updates it with one matrix-vector product per
selection (||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2): the same greedy rule, ~20x less work per step.
"""

from __future__ import annotations

import torch


def random_projection(features: torch.Tensor, dim: int, generator: torch.Generator) -> torch.Tensor:
    """Johnson-Lindenstrauss projection to ``dim`` dimensions (identity when ``dim`` >= feature size)."""
    if dim >= features.shape[1]:
        return features
    matrix = torch.randn(features.shape[1], dim, generator=generator, dtype=features.dtype) / dim**0.5
    return features @ matrix.to(features.device)


def k_center_greedy(
    features: torch.Tensor, n_select: int, *, projection_dim: int | None = 128, seed: int = 0
) -> torch.Tensor:
    """Indices of ``n_select`` rows chosen by greedy farthest-point (k-center) selection.

    Args:
        features: ``(N, D)`` patch embeddings.
        n_select: coreset size, ``1 <= n_select <= N``.
        projection_dim: distances are computed after a random projection to this size (PatchCore paper's
            speed-up); ``None`` uses the raw features.
        seed: chooses the projection and the first center.

    Returns:
        ``(n_select,)`` long tensor of distinct row indices, in selection order.

    Example:
        >>> x = torch.tensor([[0.0], [0.1], [10.0], [5.0]])
        >>> sorted(k_center_greedy(x, 3, projection_dim=None, seed=0).tolist())
        [0, 2, 3]
    """
    n = features.shape[0]
    if not 1 <= n_select <= n:
        msg = f"coreset size {n_select} must be in [1, {n}]; check model.coreset_sampling_ratio"
        raise ValueError(msg)
    generator = torch.Generator().manual_seed(seed)
    points = features.float()
    if projection_dim is not None:
        points = random_projection(points, projection_dim, generator)
    squared_norms = (points * points).sum(1)
    selected = torch.empty(n_select, dtype=torch.long)
    index = int(torch.randint(n, (1,), generator=generator))
    min_distances = torch.full((n,), float("inf"), device=points.device)
    for step in range(n_select):
        selected[step] = index
        center = points[index]
        distances = squared_norms - 2.0 * (points @ center) + squared_norms[index]
        min_distances = torch.minimum(min_distances, distances.clamp_min_(0.0))
        min_distances[index] = 0.0
        index = int(torch.argmax(min_distances))
    return selected
