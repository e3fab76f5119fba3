"""PaDiM with configurable local aggregation and optional FiLM conditioning before the Gaussians."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from anomalib.models import Padim
from anomalib.models.image.padim.torch_model import PadimModel

from cxrad.backbone import BackboneConfig, load_pretrained, validate_layers
from cxrad.metadata_conditioning.options import conditions_features
from cxrad.model.common import (
    NO_ANOMALIB_POSTPROCESSING,
    build_normative_film,
    check_odd_patch,
    pre_processor,
    rebuilt_as,
)
from cxrad.model.components.aggregation import LocalAggregation
from cxrad.model.components.distributed import all_reduce_sum, broadcast_from_rank0, is_distributed
from cxrad.model.components.gaussian import StreamingGaussian
from cxrad.model.conditioning import FilmWarmup, MemoryBankMetadata, apply_film
from cxrad.model.registry import register_model


class ConditionedPadimModel(PadimModel):
    """anomalib's PaDiM network with FiLM applied to the embedding (identity until fitted)."""

    metadata: torch.Tensor | None = None

    def generate_embedding(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """anomalib's embedding (its ``n_features`` random channels of the layers, upsampled to the first layer's
        grid), FiLM-conditioned.

        anomalib upsamples every channel of the deeper layers, concatenates, then keeps ``n_features`` of them
        (100 of 448 for resnet18): most of the upsampling is thrown away, and it was the largest cost after the
        convolutions. Channels are picked first and only those upsampled here; nearest upsampling commutes with
        picking channels, so the values and their order are anomalib's exactly.
        """
        first = features[self.layers[0]]
        index = self.idx.to(first.device)
        embedding = first.new_empty(first.shape[0], len(index), *first.shape[-2:])
        offset = 0
        for layer in self.layers:
            layer_features = features[layer]
            slots = ((index >= offset) & (index < offset + layer_features.shape[1])).nonzero().squeeze(1)
            if len(slots):
                picked = layer_features.index_select(1, index[slots] - offset)
                if picked.shape[-2:] != first.shape[-2:]:
                    picked = F.interpolate(picked, size=first.shape[-2:], mode="nearest")
                embedding[:, slots] = picked
            offset += layer_features.shape[1]
        return apply_film(self, embedding, "PaDiM")


class CxrPadim(MemoryBankMetadata, Padim):
    """anomalib PaDiM whose per-position Gaussians are accumulated batch by batch (:class:`StreamingGaussian`).

    No embedding is kept past its training step, so memory does not grow with the training set. With FiLM the
    first ``film_fit_films`` films are held back until the FiLM is fitted on them (:class:`FilmWarmup`).

    Under Lightning's DDP (several devices) every rank accumulates its shard around rank 0's shift and :meth:`fit`
    sums the statistics over ranks, so every rank ends with the Gaussians of the whole training set.
    """

    def __init__(
        self, backbone: str, layers: list[str], n_features: int, film: dict | None = None, **kwargs: object
    ) -> None:
        network = {"backbone": backbone, "layers": layers, "pre_trained": False, "n_features": n_features}
        super().__init__(**network, **kwargs)
        # anomalib's network and its channel draw, one extra hook
        self.model = rebuilt_as(self.model, ConditionedPadimModel, **network)
        self.model.film = build_normative_film(film)
        self.film_fit_films = int((film or {}).get("fit_films", 256))
        self.train_metadata: list[torch.Tensor] = []
        self._start_statistics()

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """anomalib's, less its ``devices: 1``: shards' statistics are summed over ranks (see :meth:`fit`)."""
        return {key: value for key, value in super().trainer_arguments.items() if key != "devices"}

    def _start_statistics(self) -> None:
        self.statistics = StreamingGaussian()
        self.warmup = FilmWarmup(self.model.film, self.film_fit_films)

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._start_statistics()  # a second epoch or a re-fit starts afresh

    def _drain(self) -> None:
        """Move the embeddings anomalib's forward stored (and their films' metadata) into the statistics."""
        if not self.model.memory_bank:
            return
        embedding = torch.vstack(self.model.memory_bank)
        self.model.memory_bank = []
        self._add(self.warmup.push(embedding, self.pop_train_metadata()))

    def fit(self) -> None:
        self._drain()
        self._add(self.warmup.release())  # fewer training films than film_fit_films
        if self.statistics.count == 0:
            msg = "PaDiM saw no training films: the memory bank is empty; check the train split"
            raise ValueError(msg)
        if is_distributed():  # every rank used rank 0's shift (see _add), so the ranks' sums add up
            stats = self.statistics
            total, outer, count = all_reduce_sum(stats.total, stats.outer, torch.tensor(stats.count))
            stats.merge(total, outer, int(count))
        mean, inv_covariance = self.statistics.finalize()
        self.model.gaussian.mean = mean.to(self.device)
        self.model.gaussian.inv_covariance = inv_covariance.to(self.device)

    def _add(self, maps: torch.Tensor | None) -> None:
        if maps is None:
            return
        if self.statistics.shift is None and is_distributed():
            self._share_shift(maps)
        self.statistics.update(maps)

    def _share_shift(self, maps: torch.Tensor) -> None:
        """Start the statistics around rank 0's first-batch mean, so sums from every rank share one shift.

        Every rank gets its first maps at the same step (the first batch, or the FiLM warm-up's release).
        """
        shift = broadcast_from_rank0(maps.detach().flatten(2).double().cpu().mean(0))  # (C, P)
        channels, positions = shift.shape
        self.statistics.shift = shift
        self.statistics.merge(torch.zeros_like(shift), torch.zeros(positions, channels, channels).double(), 0)


@register_model("padim", film=True, multi_device=True, validate=check_odd_patch)
def build_padim(
    backbone: BackboneConfig,
    image_size: int,
    n_features: int = 100,
    patch_size: int = 1,
    patch_stride: int = 1,
    seed: int = 0,
    conditioning: dict | None = None,
) -> CxrPadim:
    """PaDiM on ``backbone.layers['padim']``; ``n_features`` random channels are kept (seeded)."""
    layers = backbone.layers_for("padim")
    validate_layers(backbone.timm_name, layers)
    # PaDiM draws its channel subset with the global RNG at construction; fork it so that draw is seeded
    # and nothing outside changes.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CxrPadim(
            backbone=backbone.timm_name,
            layers=layers,
            n_features=n_features,
            film=conditioning if conditions_features(conditioning) else None,
            pre_processor=pre_processor(image_size, backbone),
            **NO_ANOMALIB_POSTPROCESSING,
        )
    load_pretrained(model.model.feature_extractor.feature_extractor, backbone)
    model.model.feature_extractor = LocalAggregation(model.model.feature_extractor, patch_size, patch_stride)
    return model
