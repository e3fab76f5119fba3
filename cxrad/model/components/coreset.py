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


def chunked_k_center_greedy(
    features: torch.Tensor,
    n_select: int,
    *,
    chunk_size: int = 16_384,
    projection_dim: int | None = 128,
    seed: int = 0,
) -> torch.Tensor:
    """Greedy k-center run independently on consecutive chunks, each keeping its share of ``n_select``.

    Global greedy costs O(N * n_select * D), quadratic in the number of training films, and streams the
    whole bank through memory at every step. Per chunk the work falls by the number of chunks and each chunk
    stays in cache; the price is some redundancy between chunks' picks (the merge step of a merge-reduce
    coreset, measured against the global rule in the benchmarks).

    Example:
        >>> x = torch.randn(1000, 4, generator=torch.Generator().manual_seed(0))
        >>> chunked_k_center_greedy(x, 100, chunk_size=300).shape
        torch.Size([100])
    """
    n = features.shape[0]
    if not 1 <= n_select <= n:
        msg = f"coreset size {n_select} must be in [1, {n}]; check model.coreset_sampling_ratio"
        raise ValueError(msg)
    starts = list(range(0, n, chunk_size))
    sizes = [min(chunk_size, n - start) for start in starts]
    # Largest-remainder apportionment: every chunk keeps its share and the total is exactly n_select.
    quotas = [n_select * size / n for size in sizes]
    counts = [int(q) for q in quotas]
    for i in sorted(range(len(quotas)), key=lambda i: counts[i] - quotas[i])[: n_select - sum(counts)]:
        counts[i] += 1
    picks = [
        start + k_center_greedy(features[start : start + size], count, projection_dim=projection_dim, seed=seed + i)
        for i, (start, size, count) in enumerate(zip(starts, sizes, counts, strict=True))
        if count > 0
    ]
    return torch.cat(picks)
