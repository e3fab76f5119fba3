"""Greedy k-center coreset selection (the PatchCore subsampling step), global or streamed.

Written here because anomalib's ``KCenterGreedy`` recomputes full difference tensors at every step and selects
~10-13 points/s on 180k patches with 2 CPU cores, which makes even a small PatchCore fit take minutes, and it
needs the whole bank in memory. anomalib's ``MergeReduceMemoryBank`` (MH-PatchCore) streams, but to a fixed
bank size in float64 full dimension. Here each point's squared distance to the coreset is kept and updated with
one matrix-vector product per selection (||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2), in a random projection as in
the PatchCore paper, and :class:`StreamingCoreset` applies the same greedy rule chunk by chunk.
"""

from __future__ import annotations

import torch


def _check_size(n_select: int, n: int) -> None:
    if not 1 <= n_select <= n:
        msg = f"coreset size {n_select} must be in [1, {n}]; check model.coreset_sampling_ratio"
        raise ValueError(msg)


def projection_matrix(dim_in: int, dim: int | None, generator: torch.Generator) -> torch.Tensor | None:
    """Johnson-Lindenstrauss matrix ``(dim_in, dim)``; ``None`` (no projection) if ``dim`` is None or >= ``dim_in``."""
    if dim is None or dim >= dim_in:
        return None
    return torch.randn(dim_in, dim, generator=generator) / dim**0.5


def random_projection(features: torch.Tensor, dim: int, generator: torch.Generator) -> torch.Tensor:
    """``features`` projected to ``dim`` dimensions (unchanged when ``dim`` >= feature size)."""
    matrix = projection_matrix(features.shape[1], dim, generator)
    return features if matrix is None else features @ matrix.to(features.device, features.dtype)


def min_squared_distances(points: torch.Tensor, centres: torch.Tensor, block: int | None = None) -> torch.Tensor:
    """Squared distance of each row of ``points`` to its nearest row of ``centres`` (``inf`` without centres).

    One fused matrix product per block of centres (``||c||^2 - 2 x.c`` in a single ``addmm``; ``||x||^2`` is
    constant per row, so it is added once after the minimum): compute-bound, unlike the greedy loop's
    matrix-vector products, and half the memory traffic of forming the full distance block. ``block`` centres
    at a time (default: a block of 2^25 distances, 128 MiB in float32, whatever the coreset size).
    """
    if len(centres) == 0:
        return torch.full((len(points),), float("inf"), device=points.device)
    block = block or max(1, 2**25 // max(1, len(points)))
    result = torch.full((len(points),), float("inf"), device=points.device, dtype=points.dtype)
    for start in range(0, len(centres), block):
        part = centres[start : start + block]
        partial = torch.addmm((part * part).sum(1)[None, :], points, part.T, alpha=-2.0)
        result = torch.minimum(result, partial.amin(1))
    return (result + (points * points).sum(1)).clamp_min_(0.0)


def greedy_from(points: torch.Tensor, min_distances: torch.Tensor, n_select: int, first: int) -> torch.Tensor:
    """Farthest-point selection of ``n_select`` rows of ``points`` given each row's distance to earlier centres.

    ``first`` is the first pick when there are no earlier centres (``min_distances`` all ``inf``).
    """
    squared_norms = (points * points).sum(1)
    min_distances = min_distances.clone()
    selected = torch.empty(n_select, dtype=torch.long, device=points.device)
    index = first if torch.isinf(min_distances).all() else int(torch.argmax(min_distances))
    for step in range(n_select):
        selected[step] = index
        distances = squared_norms - 2.0 * (points @ points[index]) + squared_norms[index]
        min_distances = torch.minimum(min_distances, distances.clamp_min_(0.0))
        min_distances[index] = 0.0
        index = int(torch.argmax(min_distances))
    return selected


def k_center_greedy(
    features: torch.Tensor, n_select: int, *, projection_dim: int | None = 128, seed: int = 0
) -> torch.Tensor:
    """Indices of ``n_select`` rows chosen by greedy farthest-point (k-center) selection over all rows.

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
    _check_size(n_select, n)
    generator = torch.Generator().manual_seed(seed)
    points = random_projection(features.float(), projection_dim or features.shape[1], generator)
    first = int(torch.randint(n, (1,), generator=generator))
    no_centres = torch.full((n,), float("inf"), device=points.device)
    return greedy_from(points, no_centres, n_select, first)


class StreamingCoreset:
    """Greedy k-center over a stream of embeddings, holding one chunk plus the coreset chosen so far.

    Rows are buffered into chunks of ``chunk_size``. Each chunk keeps its share of the coreset
    (``floor(ratio * rows seen)`` in total so far), picked greedily with every row's distance initialised to
    the coreset already chosen, so a chunk adds centres where earlier chunks left gaps instead of re-covering
    regions they covered (independent per-chunk greedy wastes picks that way). Peak memory is one chunk plus the
    coreset itself; the work is one matrix product per chunk against the coreset plus the greedy loop over the
    chunk only, instead of a pass over all N rows per pick.

    Args:
        ratio: fraction of rows kept (PatchCore's ``coreset_sampling_ratio``).
        chunk_size: rows per greedy chunk.
        projection_dim: random-projection size for the distances (``None``: raw features).
        seed: chooses the projection and the first centre.

    Example:
        >>> stream = StreamingCoreset(ratio=0.1, chunk_size=256)
        >>> for _ in range(4):
        ...     stream.add(torch.randn(200, 8))
        >>> stream.finalize().shape
        torch.Size([80, 8])
    """

    def __init__(self, ratio: float, chunk_size: int = 16_384, projection_dim: int | None = 128, seed: int = 0) -> None:
        if not 0.0 < ratio <= 1.0:
            msg = f"coreset ratio {ratio} must be in (0, 1]; check model.coreset_sampling_ratio"
            raise ValueError(msg)
        self.ratio, self.chunk_size, self.projection_dim = ratio, chunk_size, projection_dim
        self.generator = torch.Generator().manual_seed(seed)
        self.projection: torch.Tensor | None = None
        self.pending: list[torch.Tensor] = []
        self.n_pending = 0
        self.n_seen = 0
        self.kept: list[torch.Tensor] = []  # selected rows, original features
        self.kept_projected: list[torch.Tensor] = []  # the same rows in the projection (distance space)

    @property
    def n_kept(self) -> int:
        return sum(len(rows) for rows in self.kept)

    def add(self, embeddings: torch.Tensor) -> None:
        """Feed ``(n, D)`` rows; full chunks are reduced at once."""
        self.pending.append(embeddings.detach().float())  # stays on its device (a GPU fit selects there)
        self.n_pending += len(embeddings)
        while self.n_pending >= self.chunk_size:
            rows = torch.cat(self.pending)
            self.pending, self.n_pending = [rows[self.chunk_size :]], len(rows) - self.chunk_size
            self._reduce(rows[: self.chunk_size])

    def finalize(self) -> torch.Tensor:
        """The coreset rows (``floor(ratio * N)`` of them, at least one) once every row has been added."""
        if self.n_pending:
            rows = torch.cat(self.pending)
            self.pending, self.n_pending = [], 0
            self._reduce(rows, at_least_one=True)
        if not self.kept:
            msg = "the coreset stream received no rows; check the train split"
            raise ValueError(msg)
        return torch.cat(self.kept)

    def _reduce(self, rows: torch.Tensor, at_least_one: bool = False) -> None:
        if self.projection is None and self.projection_dim is not None:
            self.projection = projection_matrix(rows.shape[1], self.projection_dim, self.generator)
        points = rows if self.projection is None else rows @ self.projection.to(rows.device)
        self.n_seen += len(rows)
        count = int(self.ratio * self.n_seen) - self.n_kept
        if at_least_one and self.n_kept == 0:
            count = max(count, 1)
        count = min(count, len(rows))
        if count <= 0:
            return
        earlier = torch.cat(self.kept_projected) if self.kept_projected else points[:0]
        first = int(torch.randint(len(rows), (1,), generator=self.generator))
        index = greedy_from(points, min_squared_distances(points, earlier), count, first)
        self.kept.append(rows[index].clone())
        self.kept_projected.append(points[index].clone())


def streaming_k_center_greedy(
    features: torch.Tensor, ratio: float, *, chunk_size: int = 16_384, projection_dim: int | None = 128, seed: int = 0
) -> torch.Tensor:
    """:class:`StreamingCoreset` over the rows of ``features`` in order (convenience for whole tensors)."""
    stream = StreamingCoreset(ratio, chunk_size=chunk_size, projection_dim=projection_dim, seed=seed)
    for start in range(0, len(features), chunk_size):
        stream.add(features[start : start + chunk_size])
    return stream.finalize()


class GlobalCoreset:
    """The whole bank kept in memory and reduced by one global :func:`k_center_greedy` (the stock rule).

    Same interface as :class:`StreamingCoreset`; memory grows with the training set. Kept as the reference the
    streaming coreset is benchmarked against and for small sets.
    """

    def __init__(self, ratio: float, projection_dim: int | None = 128, seed: int = 0) -> None:
        self.ratio, self.projection_dim, self.seed = ratio, projection_dim, seed
        self.rows: list[torch.Tensor] = []

    def add(self, embeddings: torch.Tensor) -> None:
        self.rows.append(embeddings.detach().float())

    def finalize(self) -> torch.Tensor:
        if not self.rows:
            msg = "the coreset received no rows; check the train split"
            raise ValueError(msg)
        bank = torch.cat(self.rows)
        self.rows = []
        n_select = max(1, int(len(bank) * self.ratio))
        return bank[k_center_greedy(bank, n_select, projection_dim=self.projection_dim, seed=self.seed)]


def make_coreset(
    ratio: float, chunk_size: int | None, projection_dim: int | None = 128, seed: int = 0
) -> StreamingCoreset | GlobalCoreset:
    """:class:`StreamingCoreset` with ``chunk_size`` rows per chunk, or :class:`GlobalCoreset` when it is None."""
    if chunk_size is None:
        return GlobalCoreset(ratio, projection_dim=projection_dim, seed=seed)
    return StreamingCoreset(ratio, chunk_size=chunk_size, projection_dim=projection_dim, seed=seed)
