"""feature_ae: feature autoencoder on a frozen backbone's multi-scale features (Meissen et al.; not in anomalib).

The autoencoder is trained with the mean squared error to reconstruct the concatenated feature maps of normal
films (:mod:`cxrad.model.components.feature_ae`); the anomaly map is each position's reconstruction error and
the film score its maximum or mean. With ``metadata_conditioning=film`` an
:class:`~cxrad.metadata_conditioning.MLPFiLM` (identity at initialisation) modulates the bottleneck code by the
film's metadata and is trained with the rest, so the decoder reconstructs "normal features of this view, sex
and age".
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.models import AnomalibModule
from anomalib.pre_processing import PreProcessor
from lightning.pytorch.utilities.types import STEP_OUTPUT
from omegaconf import DictConfig

from cxrad.backbone import BackboneConfig, load_pretrained
from cxrad.metadata_conditioning.options import conditions_features
from cxrad.model.common import NO_ANOMALIB_POSTPROCESSING, build_mlp_film, pre_processor
from cxrad.model.components.feature_ae import SCORES, FeatureAEModel
from cxrad.model.conditioning import MetadataSteps, metadata_of
from cxrad.model.registry import register_model


class CxrFeatureAE(MetadataSteps, AnomalibModule):
    """Lightning module: MSE training of the autoencoder (the backbone stays frozen), Adam optimiser.

    Args:
        timm_name: timm architecture of the frozen backbone.
        layers: its feature modules.
        hidden: autoencoder level widths (each halves the feature grid).
        bottleneck: channels of the autoencoder's code.
        score: film score from the error map, ``'mean'`` or ``'max'``.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
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
        hidden: list[int],
        bottleneck: int,
        score: str = "mean",
        lr: float = 2e-4,
        weight_decay: float = 0.0,
        film: dict | None = None,
        pre_processor: PreProcessor | bool = True,
        post_processor: bool = True,
        evaluator: bool = True,
        visualizer: bool = True,
    ) -> None:
        super().__init__(
            pre_processor=pre_processor, post_processor=post_processor, evaluator=evaluator, visualizer=visualizer
        )
        self.model = FeatureAEModel(timm_name, layers, hidden, bottleneck, score)
        if film is not None:
            self.model.autoencoder.film = build_mlp_film(film, bottleneck)
        self.lr, self.weight_decay = lr, weight_decay

    def training_step(self, batch: Batch, *args: object, **kwargs: object) -> STEP_OUTPUT:
        """Mean squared error between the features of ``batch.image`` and their reconstruction."""
        del args, kwargs
        with metadata_of(self.model, batch):
            features, reconstruction = self.model(batch.image)
        loss = F.mse_loss(reconstruction, features)
        self.log("train_loss", loss.item(), on_epoch=True, prog_bar=True, logger=True, batch_size=len(batch.image))
        return {"loss": loss}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam on the autoencoder (and its FiLM); the backbone is frozen."""
        return torch.optim.Adam(self.model.autoencoder.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        return {"num_sanity_val_steps": 0}

    @property
    def learning_type(self) -> LearningType:
        return LearningType.ONE_CLASS


def check_feature_ae(cfg: DictConfig) -> None:
    """The film score is a known reduction of the error map and the autoencoder has at least one level."""
    detector = cfg.model.detector
    if detector.get("score", "mean") not in SCORES:
        msg = f"model.detector.score={detector.score} is unknown; choose from {list(SCORES)}"
        raise ValueError(msg)
    if not detector.get("hidden"):
        msg = f"model.detector.hidden={detector.get('hidden')} must list at least one level width, e.g. [128, 256]"
        raise ValueError(msg)


@register_model("feature_ae", film=True, validate=check_feature_ae)
def build_feature_ae(
    backbone: BackboneConfig,
    image_size: int,
    hidden: list[int] = (128, 256),
    bottleneck: int = 64,
    score: str = "mean",
    lr: float = 2e-4,
    weight_decay: float = 0.0,
    seed: int = 0,
    conditioning: dict | None = None,
) -> CxrFeatureAE:
    """feature_ae on ``backbone.layers.feature_ae`` (strides 4/8/16: ``layer1..3``, ``blocks.1/2/4``), seeded."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CxrFeatureAE(
            timm_name=backbone.timm_name,
            layers=backbone.layers_for("feature_ae"),
            hidden=list(hidden),
            bottleneck=bottleneck,
            score=score,
            lr=lr,
            weight_decay=weight_decay,
            film=conditioning if conditions_features(conditioning) else None,
            pre_processor=pre_processor(image_size, backbone),
            **NO_ANOMALIB_POSTPROCESSING,
        )
    load_pretrained(model.model.features.extractor.feature_extractor, backbone)
    return model
