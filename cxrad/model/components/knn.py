"""Nearest-neighbour search of patch embeddings in a PatchCore memory bank.

anomalib computes each query chunk's distances to the whole bank at once (1,024 queries x bank size floats:
4 GB per chunk at a 1M-patch bank). Here the bank is also split into blocks with a running top-k, so memory
stays bounded for any bank (``exact``), or FAISS's inverted-file index visits only ``nprobe`` of ``nlist``
clusters per query (``ivf``), trading a little recall for a large speed-up on big banks. Which is faster
where is measured in ``benchmarks/knn.py``; exact search is the default because it changes no score.
"""

from __future__ import annotations

import math

import numpy as np
import torch

SEARCH_METHODS = ("exact", "ivf")


def exact_knn(
    queries: torch.Tensor, bank: torch.Tensor, k: int, query_block: int = 2048, bank_block: int = 32_768
) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distances ``(Q, k)`` (ascending) and bank indices ``(Q, k)`` of each query's ``k`` nearest rows.

    Example:
        >>> bank = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
        >>> distances, indices = exact_knn(torch.tensor([[3.0, 3.0]]), bank, k=1)
        >>> distances.tolist(), indices.tolist()
        ([[1.0]], [[1]])
    """
    k = min(k, len(bank))
    bank_norms = (bank * bank).sum(1)
    distances_out, indices_out = [], []
    for q0 in range(0, len(queries), query_block):
        block = queries[q0 : q0 + query_block]
        best_d = torch.full((len(block), k), float("inf"), dtype=block.dtype, device=block.device)
        best_i = torch.zeros((len(block), k), dtype=torch.long, device=block.device)
        for b0 in range(0, len(bank), bank_block):
            part = bank[b0 : b0 + bank_block]
            # ||b||^2 - 2 q.b in one fused addmm; ||q||^2 is the same for a whole row, so it is added after top-k.
            partial = torch.addmm(bank_norms[None, b0 : b0 + bank_block], block, part.T, alpha=-2.0)
            part_d, part_i = partial.topk(min(k, len(part)), dim=1, largest=False)
            merged_d, order = torch.cat([best_d, part_d], 1).topk(k, dim=1, largest=False)
            best_i = torch.cat([best_i, part_i + b0], 1).gather(1, order)
            best_d = merged_d
        distances_out.append(best_d.add_((block * block).sum(1, keepdim=True)).clamp_min_(0).sqrt_())
        indices_out.append(best_i)
    return torch.cat(distances_out), torch.cat(indices_out)


class BankSearch:
    """k-nearest-neighbour search over one memory bank, ``exact`` (blocked torch) or ``ivf`` (FAISS).

    Args:
        bank: ``(N, D)`` memory bank.
        method: ``exact`` or ``ivf``.
        nlist: IVF clusters (default ``sqrt(N)``: the low end of FAISS's guideline, so k-means training on a
            1M-patch bank takes seconds on a CPU, not minutes).
        nprobe: clusters visited per query.
        seed: FAISS k-means seed.
    """

    def __init__(
        self, bank: torch.Tensor, method: str = "exact", nlist: int | None = None, nprobe: int = 8, seed: int = 0
    ) -> None:
        if method not in SEARCH_METHODS:
            msg = f"unknown nearest-neighbour search {method!r}; choose one of {SEARCH_METHODS} (model.detector.search)"
            raise ValueError(msg)
        self.bank, self.method = bank, method
        self.index = None
        if method == "ivf":
            self.index = self._build_ivf(bank, nlist, nprobe, seed)

    @staticmethod
    def _build_ivf(bank: torch.Tensor, nlist: int | None, nprobe: int, seed: int):  # noqa: ANN205 (faiss index)
        import faiss  # imported here: only the ivf search needs it

        data = np.ascontiguousarray(bank.detach().float().cpu().numpy())
        nlist = min(nlist or int(math.sqrt(len(data))), max(1, len(data) // 39))  # >= 39 points per centroid
        quantizer = faiss.IndexFlatL2(data.shape[1])
        index = faiss.IndexIVFFlat(quantizer, data.shape[1], nlist)
        index.cp.seed = seed
        index.train(data)
        index.add(data)
        index.nprobe = min(nprobe, nlist)
        return index

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Euclidean distances and indices ``(Q, k)`` of the nearest bank rows, on ``queries``' device."""
        if self.index is None:
            return exact_knn(queries, self.bank.to(queries.device, queries.dtype), k)
        k = min(k, len(self.bank))
        squared, indices = self.index.search(np.ascontiguousarray(queries.detach().float().cpu().numpy()), k)
        # A query whose probed lists hold fewer than k rows gets index -1: fall back to exact search for those.
        distances = torch.from_numpy(squared).clamp_min_(0).sqrt_()
        indices = torch.from_numpy(indices)
        missing = (indices < 0).any(1)
        if missing.any():
            distances[missing], indices[missing] = exact_knn(queries[missing].float().cpu(), self.bank.float().cpu(), k)
        return distances.to(queries.device, queries.dtype), indices.to(queries.device)
