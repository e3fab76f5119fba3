"""The memory-bank collectives in two real processes (gloo on CPU), and as identities in one."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cxrad.model.components.distributed import (
    all_reduce_sum,
    broadcast_from_rank0,
    gather_rows,
    is_distributed,
    rank,
    world_size,
)

ROWS_PER_RANK = (5, 3)


def _rows(for_rank: int, n: int, dim: int = 4) -> torch.Tensor:
    """Rows whose values name their rank and position: 100 * rank + row index, in every column."""
    return (100.0 * for_rank + torch.arange(n, dtype=torch.float32))[:, None].repeat(1, dim)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(local_rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=local_rank, world_size=len(ROWS_PER_RANK))
    try:
        results = {"world_size": world_size(), "rank": rank()}
        results["gathered"] = gather_rows(_rows(local_rank, ROWS_PER_RANK[local_rank]))
        results["gathered_with_empty_shard"] = gather_rows(_rows(local_rank, 0 if local_rank else 2))
        results["sums"] = all_reduce_sum(torch.full((2, 3), local_rank + 1.0), torch.tensor([local_rank + 1]))
        results["broadcast"] = broadcast_from_rank0(torch.tensor([float(local_rank), 7.0]))
        try:
            gather_rows(torch.zeros(2, 4 + local_rank))
        except ValueError as error:
            results["dim_error"] = str(error)
        torch.save(results, Path(out_dir) / f"rank{local_rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out_dir = tmp_path_factory.mktemp("ranks")
    mp.spawn(_worker, args=(free_port(), str(out_dir)), nprocs=len(ROWS_PER_RANK), join=True)
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(len(ROWS_PER_RANK))]


def test_each_rank_knows_its_place(rank_results: list[dict]) -> None:
    assert [(r["rank"], r["world_size"]) for r in rank_results] == [(0, 2), (1, 2)]


def test_uneven_shards_are_gathered_in_rank_order_on_every_rank(rank_results: list[dict]) -> None:
    expected = torch.cat([_rows(r, n) for r, n in enumerate(ROWS_PER_RANK)])
    assert expected[:, 0].tolist() == [0, 1, 2, 3, 4, 100, 101, 102]
    for result in rank_results:
        assert torch.equal(result["gathered"], expected)


def test_an_empty_shard_contributes_no_rows(rank_results: list[dict]) -> None:
    for result in rank_results:
        assert torch.equal(result["gathered_with_empty_shard"], _rows(0, 2))


def test_sums_are_float64_totals_over_ranks(rank_results: list[dict]) -> None:
    for result in rank_results:
        matrix, count = result["sums"]
        assert matrix.dtype == count.dtype == torch.float64
        assert torch.equal(matrix, torch.full((2, 3), 3.0, dtype=torch.float64))  # 1 + 2
        assert count.tolist() == [3.0]


def test_broadcast_gives_rank0_values_everywhere(rank_results: list[dict]) -> None:
    for result in rank_results:
        assert result["broadcast"].tolist() == [0.0, 7.0]


def test_mismatched_feature_sizes_fail_on_every_rank_with_the_sizes(rank_results: list[dict]) -> None:
    for result in rank_results:
        assert "[4, 5]" in result["dim_error"]


def test_without_a_process_group_everything_is_the_identity() -> None:
    assert not is_distributed()
    assert (world_size(), rank()) == (1, 0)
    rows = _rows(0, 5)
    assert gather_rows(rows) is rows
    assert broadcast_from_rank0(rows) is rows
    (total,) = all_reduce_sum(rows)
    assert total.dtype == torch.float64
    assert torch.equal(total, rows.double())
    assert all_reduce_sum() == ()


def test_gather_rows_rejects_non_matrix_input() -> None:
    with pytest.raises(ValueError, match=r"shape \(2, 3, 4\)"):
        gather_rows(torch.zeros(2, 3, 4))
