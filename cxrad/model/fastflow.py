"""FastFlow (normalising flow on backbone features), depth set by ``flow_steps``.

With ``metadata_conditioning=film`` the flow is conditional: an :class:`~cxrad.metadata_conditioning.MLPFiLM`
per feature level maps each film's (layer-normalised) backbone features through ``gamma(m) * x + beta(m)``
before that level's flow blocks. The flow then models ``p(x | m) = p_flow(FiLM(x; m)) * |det dFiLM/dx|``: the
FiLM's log-determinant ``H * W * sum_c log|gamma_c(m)|`` is added to the flow's log-Jacobian in training, so
the likelihood cannot be raised by shrinking the features to zero. The FiLMs are submodules of ``self.model``
and so trained by anomalib's optimiser together with the flow. Scores are anomalib's (per-position
``-exp(-mean z^2 / 2)`` of ``z = flow(FiLM(x; m))``).
"""

from __future__ import annotations

import torch
from anomalib.data import Batch, InferenceBatch
from anomalib.models import Fastflow
from anomalib.models.image.fastflow.torch_model import FastflowModel
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torch import nn

from cxrad.backbone import BackboneConfig, load_pretrained
from cxrad.model.common import NO_ANOMALIB_POSTPROCESSING, build_mlp_film, pre_processor, wants_film
from cxrad.model.conditioning import MetadataSteps, metadata_of

# The only backbones anomalib 2.7's FastflowModel accepts (it raises on others deep inside __init__).
FASTFLOW_BACKBONES = ("resnet18", "wide_resnet50_2", "cait_m48_448", "deit_base_distilled_patch16_384")
# FiLM'd FastFlow modulates the CNN feature pyramid; the transformer backbones take another feature path.
FASTFLOW_FILM_BACKBONES = ("resnet18", "wide_resnet50_2")


class ConditionedFastflowModel(FastflowModel):
    """anomalib's FastFlow network with a trained FiLM on each CNN feature level before its flow."""

    metadata: torch.Tensor | None = None
    films: nn.ModuleList
    film_log_det: list[torch.Tensor]

    def _get_cnn_features(self, input_tensor: torch.Tensor) -> list[torch.Tensor]:
        features = super()._get_cnn_features(input_tensor)
        if self.metadata is None:
            msg = "metadata-conditioned FastFlow got a batch without metadata; use cxrad's CxrBatch loaders"
            raise ValueError(msg)
        metadata = self.metadata.to(features[0].device)
        conditioned, self.film_log_det = [], []
        for film, feature in zip(self.films, features, strict=True):
            gamma, beta = film.parameters_for(metadata.to(feature.dtype))
            conditioned.append(gamma * feature + beta)
            height, width = feature.shape[-2:]
            log_gamma = gamma.abs().clamp_min(1e-6).log().flatten(1).sum(1)  # (B,)
            self.film_log_det.append(height * width * log_gamma)
        return conditioned

    def forward(self, input_tensor: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]] | InferenceBatch:
        output = super().forward(input_tensor)
        if not self.training:
            return output
        hidden_variables, log_jacobians = output
        log_jacobians = [jac + film for jac, film in zip(log_jacobians, self.film_log_det, strict=True)]
        return hidden_variables, log_jacobians


class CxrFastflow(MetadataSteps, Fastflow):
    """anomalib FastFlow conditioned on metadata through per-level FiLM, trained end to end."""

    def __init__(self, *args: object, film: dict, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.model.__class__ = ConditionedFastflowModel
        channels = self.model.feature_extractor.feature_info.channels()
        self.model.films = nn.ModuleList(build_mlp_film(film, channel) for channel in channels)

    def training_step(self, batch: Batch, *args: object, **kwargs: object) -> STEP_OUTPUT:
        """anomalib's FastFlow step with metadata in the forward."""
        del args, kwargs
        with metadata_of(self.model, batch):
            hidden_variables, jacobians = self.model(batch.image)
        loss = self.loss(hidden_variables, jacobians)
        self.log("train_loss", loss.item(), on_epoch=True, prog_bar=True, logger=True)
        return {"loss": loss}


def build_fastflow(
    backbone: BackboneConfig,
    image_size: int,
    flow_steps: int = 8,
    hidden_ratio: float = 1.0,
    conv3x3_only: bool = False,
    seed: int = 0,
    conditioning: dict | None = None,
) -> Fastflow:
    """FastFlow on a ResNet backbone; ``image_size`` must be a multiple of 32 (checked by ``validate``)."""
    if backbone.timm_name not in FASTFLOW_BACKBONES:
        msg = f"FastFlow (anomalib 2.7) accepts backbones {FASTFLOW_BACKBONES}, not {backbone.name}"
        raise ValueError(msg)
    film = wants_film(conditioning)
    if film and backbone.timm_name not in FASTFLOW_FILM_BACKBONES:
        msg = f"FastFlow with metadata_conditioning=film needs a CNN backbone {FASTFLOW_FILM_BACKBONES}"
        raise ValueError(msg)
    kwargs = {
        "backbone": backbone.timm_name,
        "pre_trained": False,
        "flow_steps": flow_steps,
        "hidden_ratio": hidden_ratio,
        "conv3x3_only": conv3x3_only,
        "pre_processor": pre_processor(image_size, backbone),
        **NO_ANOMALIB_POSTPROCESSING,
    }
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CxrFastflow(film=conditioning, **kwargs) if film else Fastflow(**kwargs)
    load_pretrained(model.model.feature_extractor, backbone)
    return model
