"""Lightning's multi-device path on this machine: two CPU ranks (ddp_spawn, gloo) each see half the training rows
and, after :func:`gather_rows`, both hold all of them, as a memory bank fitted per shard will."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from torch.utils.data import DataLoader, TensorDataset

from cxrad.model.components.distributed import gather_rows, rank, world_size

N_ROWS = 8


class RowCollector(LightningModule):
    """Collects its shard of rows during the epoch (as a memory-bank model does), merges ranks at the end."""

    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.out_dir = out_dir
        self.rows: list[torch.Tensor] = []
        # Lightning wraps the module in DistributedDataParallel, which refuses a module with nothing to train.
        self.unused = torch.nn.Parameter(torch.zeros(1))
        self.automatic_optimization = False  # nothing to optimise, so training_step may return None under DDP

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.rows.append(batch[0])

    def on_train_epoch_end(self) -> None:
        shard = torch.cat(self.rows)
        merged = gather_rows(shard)
        torch.save({"rank": rank(), "world": world_size(), "shard": shard, "merged": merged}, self._path())

    def _path(self) -> Path:
        return Path(self.out_dir) / f"rank{self.global_rank}.pt"

    def configure_optimizers(self) -> None:
        return None


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out_dir = tmp_path_factory.mktemp("ddp")
    rows = torch.arange(N_ROWS, dtype=torch.float32)[:, None].repeat(1, 3)
    loader = DataLoader(TensorDataset(rows), batch_size=2)
    trainer = Trainer(
        strategy="ddp_spawn",
        accelerator="cpu",
        devices=2,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(RowCollector(str(out_dir)), loader)
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(2)]


def test_each_rank_fits_on_half_the_rows(rank_results: list[dict]) -> None:
    assert [(r["rank"], r["world"]) for r in rank_results] == [(0, 2), (1, 2)]
    shards = [set(r["shard"][:, 0].tolist()) for r in rank_results]
    assert [len(shard) for shard in shards] == [N_ROWS // 2] * 2
    assert not shards[0] & shards[1]  # DistributedSampler: disjoint shards


def test_after_gathering_every_rank_holds_all_rows(rank_results: list[dict]) -> None:
    for result in rank_results:
        assert sorted(result["merged"][:, 0].tolist()) == list(range(N_ROWS))
    assert torch.equal(rank_results[0]["merged"], rank_results[1]["merged"])
