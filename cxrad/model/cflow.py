"""CFLOW-AD: conditional normalising flows (one per level of ``backbone.layers.cflow``) on a frozen
pretrained encoder's features, conditioned on a positional encoding; the anomaly map is the per-position
unlikelihood, upsampled and summed over levels.

Encoder weights come from :func:`cxrad.backbone.load_pretrained`; loss, optimiser (manual optimisation over
fibre batches) and trainer arguments are anomalib's. No FiLM: use ``metadata_conditioning=normative``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from anomalib.data import Batch
from anomalib.models import Cflow
from lightning.pytorch.utilities.types import STEP_OUTPUT
from omegaconf import DictConfig

from cxrad.backbone import BackboneConfig
from cxrad.backbone.weights import feature_layer_strides
from cxrad.model.common import anomalib_detector
from cxrad.model.conditioning import MetadataSteps
from cxrad.model.registry import register_model

log = logging.getLogger(__name__)


class CxrCflow(MetadataSteps, Cflow):
    """anomalib's CFLOW with metadata in its evaluation steps (built with ``pre_trained=False``).

    anomalib trains each level's flow on fibre batches of ``fiber_batch_size`` positions and fails on a batch
    whose deepest level has fewer (the last, short batch of an epoch: e.g. 3 films x 4 x 4 positions at 128 px).
    Such a batch is skipped, with a warning naming it; ``validate`` refuses settings where a full batch is short.
    """

    def training_step(self, batch: Batch, *args: object, **kwargs: object) -> STEP_OUTPUT | None:
        stride = max(self.model.encoder.feature_extractor.feature_info.reduction())  # the deepest level
        available = fibres(len(batch.image), batch.image.shape[-2:], stride)
        if available < self.model.fiber_batch_size:
            log.warning(
                "CFLOW skips a training batch of %d films: %d fibres at its deepest level < fiber_batch_size=%d",
                len(batch.image),
                available,
                self.model.fiber_batch_size,
            )
            return None
        return super().training_step(batch, *args, **kwargs)


def fibres(films: int, size: Sequence[int], stride: int) -> int:
    """Fibres (films x positions) a batch of ``films`` of ``size`` gives at a level of ``stride``."""
    return films * math.ceil(size[0] / stride) * math.ceil(size[1] / stride)


def validate_cflow(cfg: DictConfig) -> None:
    """A full training batch must give at least ``fiber_batch_size`` fibres at the deepest level."""
    size, batch = cfg.preprocessing.image_size, cfg.data.batch_size
    strides = feature_layer_strides(cfg.backbone.timm_name)
    stride = max(strides.get(layer, 1) for layer in cfg.backbone.layers.cflow)  # unknown layers: validate's message
    available = fibres(batch, (size, size), stride)
    fibre_batch = cfg.model.detector.fiber_batch_size
    if available < fibre_batch:
        msg = (
            f"model=cflow trains on fibre batches of model.detector.fiber_batch_size={fibre_batch} positions, but a "
            f"batch of data.batch_size={batch} films at {size} px has {available} at the deepest level; "
            f"lower model.detector.fiber_batch_size to {available} or raise data.batch_size"
        )
        raise ValueError(msg)


@register_model("cflow", validate=validate_cflow)
def build_cflow(
    backbone: BackboneConfig,
    image_size: int,
    fiber_batch_size: int = 64,
    condition_vector: int = 128,
    coupling_blocks: int = 8,
    clamp_alpha: float = 1.9,
    lr: float = 1e-4,
    seed: int = 0,
    conditioning: dict | None = None,
) -> CxrCflow:
    """CFLOW on ``backbone.layers.cflow`` with ``coupling_blocks`` per flow (anomalib's defaults otherwise)."""
    del conditioning  # FiLM is refused by validate (registered without film)
    return anomalib_detector(
        CxrCflow,
        backbone,
        image_size,
        seed,
        lambda model: model.model.encoder.feature_extractor,
        backbone=backbone.timm_name,
        layers=backbone.layers_for("cflow"),
        pre_trained=False,
        fiber_batch_size=fiber_batch_size,
        condition_vector=condition_vector,
        coupling_blocks=coupling_blocks,
        clamp_alpha=clamp_alpha,
        lr=lr,
    )
