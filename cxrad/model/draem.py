"""DRAEM (reconstruction + discriminative network trained on simulated anomalies); no backbone.

With ``metadata_conditioning=film`` an :class:`~cxrad.metadata_conditioning.MLPFiLM` modulates the
reconstructive autoencoder's bottleneck (the encoder's output, before the decoder) with each film's metadata,
so the network reconstructs "a normal film of this view/age/sex". The FiLM is a submodule of ``self.model``:
anomalib's optimiser (``self.model.parameters()``) trains it with the rest of DRAEM.
"""

from __future__ import annotations

from pathlib import Path

import torch
from anomalib.data import Batch, InferenceBatch
from anomalib.models import Draem
from anomalib.models.image.draem.torch_model import DraemModel
from lightning.pytorch.utilities.types import STEP_OUTPUT

from cxrad.metadata_conditioning import FiLM
from cxrad.metadata_conditioning.options import conditions_features
from cxrad.model.common import NO_ANOMALIB_POSTPROCESSING, build_mlp_film, pre_processor, rebuilt_as
from cxrad.model.conditioning import MetadataSteps, metadata_of
from cxrad.model.registry import register_model


class ConditionedDraemModel(DraemModel):
    """anomalib's DRAEM network with FiLM on the reconstructive bottleneck (same outputs otherwise)."""

    metadata: torch.Tensor | None = None

    def reconstruct(self, batch: torch.Tensor) -> torch.Tensor:
        subnetwork = self.reconstructive_subnetwork
        encoded = subnetwork.encoder(batch)
        film: FiLM | None = getattr(self, "film", None)
        if film is not None:
            if self.metadata is None:
                msg = "metadata-conditioned DRAEM got a batch without metadata; use cxrad's CxrBatch loaders"
                raise ValueError(msg)
            encoded = film(encoded, self.metadata.to(encoded.device))
        return subnetwork.decoder(encoded)

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | InferenceBatch:
        # anomalib's DraemModel.forward with the reconstruction going through the FiLM'd bottleneck.
        reconstruction = self.reconstruct(batch)
        prediction = self.discriminative_subnetwork(torch.cat([batch, reconstruction], dim=1))
        if self.training:
            return reconstruction, prediction
        anomaly_map = torch.softmax(prediction, dim=1)[:, 1, ...]
        pred_score = torch.amax(anomaly_map, dim=(-2, -1))
        return InferenceBatch(pred_score=pred_score, anomaly_map=anomaly_map)


def bottleneck_channels(model: DraemModel) -> int:
    """Channels of the reconstructive encoder's output (``8 * base_width``)."""
    first_conv = model.reconstructive_subnetwork.encoder.block1[0]
    return 8 * first_conv.out_channels


class CxrDraem(MetadataSteps, Draem):
    """anomalib DRAEM whose reconstructive bottleneck is FiLM-conditioned on metadata, trained end to end."""

    def __init__(self, *args: object, film: dict, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.model = rebuilt_as(self.model, ConditionedDraemModel, sspcab=self.sspcab)  # FiLM'd bottleneck
        if self.sspcab:
            self.setup_sspcab()  # anomalib hooked the network it built; hook the rebuilt one
        self.model.film = build_mlp_film(film, bottleneck_channels(self.model))

    def training_step(self, batch: Batch, *args: object, **kwargs: object) -> STEP_OUTPUT:
        """anomalib's DRAEM step (anomalies simulated on ``batch.image``) with metadata in the forward."""
        del args, kwargs
        input_image = batch.image
        augmented_image, anomaly_mask = self.augmenter(input_image)
        with metadata_of(self.model, batch):
            reconstruction, prediction = self.model(augmented_image)
        loss = self.loss(input_image, reconstruction, anomaly_mask, prediction)
        if self.sspcab:
            loss += self.sspcab_lambda * self.sspcab_loss(
                self.sspcab_activations["input"],
                self.sspcab_activations["output"],
            )
        self.log("train_loss", loss.item(), on_epoch=True, prog_bar=True, logger=True)
        return {"loss": loss}


@register_model("draem", uses_backbone=False, film=True)
def build_draem(
    image_size: int,
    texture_dir: str | Path,
    enable_sspcab: bool = False,
    beta: tuple[float, float] = (0.1, 1.0),
    seed: int = 0,
    conditioning: dict | None = None,
    backbone: object = None,
) -> Draem:
    """DRAEM with Perlin-noise anomalies from ``texture_dir``; FiLM on the bottleneck with ``conditioning=film``.

    anomalib downloads the DTD texture set whenever its directory does not exist; cxrad always passes an
    existing directory (empty by default: anomalib then uses Perlin noise only), so nothing is downloaded.
    """
    del backbone  # DRAEM has no backbone; accepted so every builder has the same call shape.
    texture_dir = Path(texture_dir).expanduser()
    texture_dir.mkdir(parents=True, exist_ok=True)
    kwargs = {
        "dtd_dir": texture_dir,
        "enable_sspcab": enable_sspcab,
        "beta": tuple(beta),
        "pre_processor": pre_processor(image_size, None),
        **NO_ANOMALIB_POSTPROCESSING,
    }
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if conditions_features(conditioning):
            return CxrDraem(film=conditioning, **kwargs)
        return Draem(**kwargs)
