"""global_gaussian: film-level Mahalanobis distance of pooled deep features (not in anomalib).

Score: the Mahalanobis distance of a film's mean- and max-pooled deepest-stage features to a Ledoit-Wolf
Gaussian of the normal training films. Anomaly map: each position's Mahalanobis distance to that position's
own Ledoit-Wolf Gaussian on the same feature map, upsampled bilinearly to the image (see
:mod:`cxrad.model.components.global_gaussian`). One pass over the training films; the statistics stream, so
memory does not grow with the training set.

With ``metadata_conditioning=film`` a closed-form :class:`~cxrad.metadata_conditioning.NormativeFiLM` standardises
the feature map by metadata before pooling (fitted on the first ``fit_films`` training films, as for PaDiM).
"""

from __future__ import annotations

from typing import Any

import torch
from anomalib import LearningType
from anomalib.models import AnomalibModule
from anomalib.models.components import MemoryBankMixin
from anomalib.pre_processing import PreProcessor

from cxrad.backbone import BackboneConfig, load_pretrained
from cxrad.metadata_conditioning.options import conditions_features
from cxrad.model.common import NO_ANOMALIB_POSTPROCESSING, build_normative_film, pre_processor
from cxrad.model.components.global_gaussian import GlobalGaussianModel, pool_mean_max, position_vectors
from cxrad.model.components.ledoit_wolf import StreamingLedoitWolf
from cxrad.model.conditioning import FilmWarmup, MemoryBankMetadata
from cxrad.model.registry import register_model


class CxrGlobalGaussian(MemoryBankMetadata, MemoryBankMixin, AnomalibModule):
    """Lightning module: one pass accumulates both Gaussians' statistics, :meth:`fit` finishes them.

    Args:
        timm_name: timm architecture of the frozen backbone.
        layers: its feature modules (``backbone.layers.global_gaussian``: the deepest stage).
        film: the ``metadata_conditioning`` config when it conditions features, else None.
        pre_processor: resize and normalisation.
        post_processor: anomalib's post-processor (cxrad passes False).
        evaluator: anomalib's metrics (cxrad passes False).
        visualizer: anomalib's visualiser (cxrad passes False).
    """

    def __init__(
        self,
        timm_name: str,
        layers: list[str],
        film: dict | None = None,
        pre_processor: PreProcessor | bool = True,
        post_processor: bool = True,
        evaluator: bool = True,
        visualizer: bool = True,
    ) -> None:
        super().__init__(
            pre_processor=pre_processor, post_processor=post_processor, evaluator=evaluator, visualizer=visualizer
        )
        self.model = GlobalGaussianModel(timm_name, layers)
        self.model.film = build_normative_film(film)
        self.film_fit_films = int((film or {}).get("fit_films", 256))
        self.train_metadata: list[torch.Tensor] = []
        self._start_statistics()

    def _start_statistics(self) -> None:
        self.pooled = StreamingLedoitWolf()
        self.positions = StreamingLedoitWolf()
        self.warmup = FilmWarmup(self.model.film, self.film_fit_films)

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._start_statistics()  # a re-fit starts afresh

    def _drain(self) -> None:
        """Move the feature maps of the last forward pass (FiLM-conditioned once fitted) into the statistics."""
        if not self.model.memory_bank:
            return
        maps = torch.cat(self.model.memory_bank)
        self.model.memory_bank = []
        self._add(self.warmup.push(maps, self.pop_train_metadata()))

    def _add(self, maps: torch.Tensor | None) -> None:
        if maps is not None:
            self.pooled.update(pool_mean_max(maps).unsqueeze(1))
            self.positions.update(position_vectors(maps))

    def fit(self) -> None:
        self._drain()
        self._add(self.warmup.release())  # fewer training films than fit_films
        self.model.set_gaussians(self.pooled.finalize(), self.positions.finalize())

    def configure_optimizers(self) -> None:
        """Nothing is trained by gradient."""

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        return {"max_epochs": 1, "val_check_interval": 1.0, "num_sanity_val_steps": 0, "devices": 1}

    @property
    def learning_type(self) -> LearningType:
        return LearningType.ONE_CLASS


@register_model("global_gaussian", film=True)
def build_global_gaussian(
    backbone: BackboneConfig, image_size: int, seed: int = 0, conditioning: dict | None = None
) -> CxrGlobalGaussian:
    """global_gaussian on ``backbone.layers.global_gaussian`` (the deepest stage: ``blocks.6``, ``layer4``).

    ``seed`` is accepted so every builder has the same call shape: nothing here is random.
    """
    del seed
    model = CxrGlobalGaussian(
        timm_name=backbone.timm_name,
        layers=backbone.layers_for("global_gaussian"),
        film=conditioning if conditions_features(conditioning) else None,
        pre_processor=pre_processor(image_size, backbone),
        **NO_ANOMALIB_POSTPROCESSING,
    )
    load_pretrained(model.model.features.extractor.feature_extractor, backbone)
    return model
