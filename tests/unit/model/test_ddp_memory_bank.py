"""PatchCore and PaDiM fitted by Lightning's DDP in two real CPU processes (``ddp_spawn``, gloo).

Each rank streams its shard of 8 films (4 each, so DistributedSampler pads nothing; Lightning always shuffles
training shards under DDP); the ranks' coresets are merged, the PaDiM statistics summed and the FiLM fitted on
every rank's warm-up films. Each rank writes what it ended with to a file, which the tests compare between ranks
and with a one-process fit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import DataLoader

from cxrad.backbone import BackboneConfig
from cxrad.data.items import CxrBatch, CxrItem
from cxrad.data.metadata import MetadataEncoder
from cxrad.model import build_padim, build_patchcore
from cxrad.model.components.distributed import rank

SIZE = 64
N_FILMS = 8  # divisible by the 2 ranks, and 4 films per rank in batches of 2: no padding, no partial batch
BATCH = 2
RATIO = 0.25
BACKBONE = BackboneConfig(
    "resnet18", "resnet18", pretrained=False, layers={"patchcore": ["layer2"], "padim": ["layer2"]}
)
# PatchCore: more warm-up films than the training set, so the FiLM is fitted in fit() on all 8 films.
# PaDiM: 4 warm-up films, reached after the first step of each rank (2 + 2), so the FiLM is fitted mid-stream.
PATCHCORE_FILM = {"name": "film", "per_position": True, "fit_films": 16}
PADIM_FILM = {"name": "film", "per_position": True, "fit_films": 4}


def _films() -> list[CxrItem]:
    generator = torch.Generator().manual_seed(0)
    views = ["PA", "AP", "AP", "PA"] * (N_FILMS // 4)
    return [
        CxrItem(
            image=torch.rand(3, SIZE, SIZE, generator=generator),
            gt_label=torch.tensor(0),
            metadata=MetadataEncoder().encode(30.0 + 5 * index, "MF"[index % 3 == 0], views[index]),
            sample_index=torch.tensor(index),
        )
        for index in range(N_FILMS)
    ]


def _loader(order: list[int] | None = None) -> DataLoader:
    films = _films()
    films = films if order is None else [films[index] for index in order]
    return DataLoader(films, batch_size=BATCH, shuffle=False, collate_fn=CxrBatch.collate)


class RankRecorder(Callback):
    """Writes, on every rank, the films it was given and the bank / Gaussians / FiLM it ended the fit with."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.films: list[int] = []

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: CxrBatch, batch_idx: int
    ) -> None:
        self.films += batch.sample_index.tolist()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        model = pl_module.model
        film = model.film.state_dict() if model.film is not None else {}
        result = {"rank": rank(), "films": self.films, "film": {name: value.clone() for name, value in film.items()}}
        if hasattr(pl_module, "coreset"):
            result.update(shard_bank=torch.cat(pl_module.coreset.kept), bank=model.memory_bank.clone())
        else:
            result.update(mean=model.gaussian.mean.clone(), inv_covariance=model.gaussian.inv_covariance.clone())
        torch.save(result, Path(self.out_dir) / f"rank{trainer.global_rank}.pt")


def _quiet_trainer(**kwargs: object) -> Trainer:
    """A one-epoch CPU trainer without logging, checkpoints or progress output."""
    return Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def _fit_on_two_ranks(model: LightningModule, out_dir: Path) -> list[dict]:
    trainer = _quiet_trainer(strategy="ddp_spawn", devices=2, callbacks=[RankRecorder(str(out_dir))])
    trainer.fit(model, _loader())
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(2)]


@pytest.fixture(scope="module")
def patchcore_fit(tmp_path_factory: pytest.TempPathFactory) -> tuple[LightningModule, list[dict]]:
    model = build_patchcore(BACKBONE, SIZE, coreset_sampling_ratio=RATIO, conditioning=PATCHCORE_FILM)
    return model, _fit_on_two_ranks(model, tmp_path_factory.mktemp("patchcore"))


@pytest.fixture(scope="module")
def padim_fit(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    return _fit_on_two_ranks(_padim(), tmp_path_factory.mktemp("padim"))


def _padim() -> LightningModule:
    return build_padim(BACKBONE, SIZE, n_features=16, seed=3, conditioning=PADIM_FILM)  # seeded: same weights


def test_ddp_can_wrap_the_models(patchcore_fit: tuple) -> None:
    """DistributedDataParallel refuses a module with no parameter that requires a gradient. anomalib leaves the
    backbone's parameters trainable (never stepped: no optimiser), which is what lets Lightning wrap these models."""
    for model in (patchcore_fit[0], _padim()):
        assert any(parameter.requires_grad for parameter in model.parameters())


def _assert_same_film(ranks: list[dict]) -> None:
    first, second = (result["film"] for result in ranks)
    assert first["mean_bar"].numel() > 0, "the FiLM was not fitted"
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_each_rank_streams_half_the_films(patchcore_fit: tuple, padim_fit: list[dict]) -> None:
    for ranks in (patchcore_fit[1], padim_fit):
        assert [result["rank"] for result in ranks] == [0, 1]
        films = [set(result["films"]) for result in ranks]
        assert [len(shard) for shard in films] == [N_FILMS // 2] * 2
        assert films[0] | films[1] == set(range(N_FILMS))


def test_patchcore_ranks_end_with_the_same_bank_and_film(patchcore_fit: tuple) -> None:
    _, ranks = patchcore_fit
    assert torch.equal(ranks[0]["bank"], ranks[1]["bank"])
    _assert_same_film(ranks)


def test_patchcore_bank_is_the_union_of_the_shard_coresets(patchcore_fit: tuple) -> None:
    model, ranks = patchcore_fit
    shards = [result["shard_bank"] for result in ranks]
    patches_per_shard = N_FILMS // 2 * (SIZE // 8) ** 2  # layer2: stride 8
    assert [len(shard) for shard in shards] == [int(RATIO * patches_per_shard)] * 2
    assert torch.equal(ranks[0]["bank"], torch.cat(shards))  # rank order, nothing dropped or added
    # Every row of a shard's coreset is a (conditioned) patch of one of that rank's own films.
    assert torch.equal(model.model.memory_bank, ranks[0]["bank"])  # ddp_spawn hands rank 0's fit back
    patches = _patch_embeddings(model)  # (films, patches, dim)
    for result in ranks:
        # float64 and no matrix-product shortcut: float32 |x|^2 + |y|^2 - 2xy cancels to ~1e-3 for equal rows
        distances = torch.cdist(
            result["shard_bank"].double(), patches.flatten(0, 1).double(), compute_mode="donot_use_mm_for_euclid_dist"
        )
        nearest, index = distances.min(1)
        assert nearest.max() < 1e-4 * patches.norm(dim=-1).mean()
        assert set((index // patches.shape[1]).tolist()) <= set(result["films"])


def _patch_embeddings(model: LightningModule) -> torch.Tensor:
    films = CxrBatch.collate(_films())
    model.model.train()  # anomalib's PatchCore stores the embeddings in training mode
    model.model.metadata = films.metadata
    with torch.no_grad():
        model.model(model.pre_processor(films.image))
    model.model.metadata = None
    embedding = model.model.embedding_store.pop()
    return embedding.reshape(N_FILMS, -1, embedding.shape[-1])


def test_padim_ranks_end_with_the_same_gaussians_and_film(padim_fit: list[dict]) -> None:
    for name in ("mean", "inv_covariance"):
        assert torch.equal(padim_fit[0][name], padim_fit[1][name])
    _assert_same_film(padim_fit)


def test_padim_on_two_ranks_equals_one_process(padim_fit: list[dict]) -> None:
    """One process fed the films in the ranks' step order (Lightning's DistributedSampler shuffles the training
    shards) warms the FiLM up on the same 4 films the two ranks' first steps held, so everything must agree."""
    shards = [result["films"] for result in padim_fit]
    steps = [shard[start : start + BATCH] for start in range(0, len(shards[0]), BATCH) for shard in shards]
    reference = _padim()
    _quiet_trainer(devices=1).fit(reference, _loader(order=[film for step in steps for film in step]))
    film = reference.model.film.state_dict()
    for name, value in padim_fit[0]["film"].items():
        torch.testing.assert_close(value, film[name], rtol=1e-5, atol=1e-6)
    gaussian = reference.model.gaussian
    torch.testing.assert_close(padim_fit[0]["mean"], gaussian.mean, rtol=1e-5, atol=1e-5)
    scale = gaussian.inv_covariance.abs().max()
    torch.testing.assert_close(padim_fit[0]["inv_covariance"], gaussian.inv_covariance, rtol=1e-4, atol=1e-4 * scale)
