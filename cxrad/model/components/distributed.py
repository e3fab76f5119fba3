"""Collectives for fitting a memory bank on several devices: each rank reduces its shard, then ranks merge.

Under Lightning's DDP strategies every rank sees a different shard of the training films (``DistributedSampler``).
PatchCore keeps a coreset per shard and merges them with :func:`gather_rows` (shards differ in size, so ranks
hold different row counts); PaDiM sums its running statistics with :func:`all_reduce_sum`. Every function is the
identity when ``torch.distributed`` is not initialised, so single-process runs take exactly the same code path.

The uneven gather is torchmetrics' ``gather_all_tensors`` (pad to the longest shard, all-gather, trim), which
works with the ``gloo`` backend on CPU and ``nccl`` on GPU. NCCL only moves CUDA tensors, while the memory-bank
code keeps its statistics on the CPU, so every function sends through the backend's device and returns results
on the input's device.

Example:
    >>> import torch
    >>> rows = torch.ones(3, 2)
    >>> gather_rows(rows) is rows  # not distributed: unchanged
    True
    >>> all_reduce_sum(torch.tensor([1.0, 2.0]))[0].dtype
    torch.float64
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torchmetrics.utilities.distributed import gather_all_tensors


def is_distributed() -> bool:
    """Whether a ``torch.distributed`` process group is up (Lightning DDP ranks), with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes sharing the fit (1 without ``torch.distributed``)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 without ``torch.distributed``)."""
    return dist.get_rank() if is_distributed() else 0


def _collective_device() -> torch.device:
    """Where tensors must be for the process group's backend: NCCL moves CUDA tensors only, gloo takes CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """Every rank's ``(n_rank, dim)`` rows, concatenated in rank order and returned on every rank.

    Row counts may differ between ranks (zero included); ``dim`` and dtype must not.

    Args:
        rows: This rank's 2-D tensor, e.g. its shard's coreset of patch features.

    Returns:
        ``(sum of n_rank, dim)`` tensor, rank 0's rows first; ``rows`` itself when not distributed.

    Raises:
        ValueError: ``rows`` is not 2-D, or ranks hold different feature sizes.
    """
    if rows.ndim != 2:
        msg = f"gather_rows expects a 2-D (rows, features) tensor, got shape {tuple(rows.shape)}; flatten it first"
        raise ValueError(msg)
    if not is_distributed():
        return rows
    parts = gather_all_tensors(rows.to(_collective_device()))
    dims = [part.shape[1] for part in parts]
    if len(set(dims)) > 1:  # every rank sees the same list, so every rank raises (no rank left waiting)
        msg = f"ranks hold rows of different feature sizes {dims}; every rank must use the same backbone and layers"
        raise ValueError(msg)
    return torch.cat(parts).to(rows.device)


def all_reduce_sum(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Element-wise sums over ranks of each tensor, in float64 (streamed statistics such as PaDiM's running sums).

    All tensors travel in one collective. Every rank must pass the same shapes in the same order.

    Args:
        *tensors: This rank's partial sums (any shapes, any float or integer dtype).

    Returns:
        One float64 tensor per input with the sum over all ranks; float64 copies when not distributed.
    """
    doubles = [tensor.detach().to(torch.float64) for tensor in tensors]
    if not is_distributed() or not doubles:
        return tuple(doubles)
    flat = torch.cat([tensor.reshape(-1).to(_collective_device()) for tensor in doubles])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    sums = flat.split([tensor.numel() for tensor in doubles])
    return tuple(total.reshape(tensor.shape).to(tensor.device) for total, tensor in zip(sums, doubles, strict=True))


def broadcast_from_rank0(tensor: torch.Tensor) -> torch.Tensor:
    """Rank 0's values of ``tensor`` on every rank (e.g. to make a merged coreset bit-identical everywhere).

    Every rank must pass a tensor of the same shape and dtype; the input is not modified.
    """
    if not is_distributed():
        return tensor
    shared = tensor.detach().clone().contiguous().to(_collective_device())
    dist.broadcast(shared, src=0)
    return shared.to(tensor.device)
