"""CFLOW-AD: conditional normalising flows (one per level of ``backbone.layers.cflow``) on a frozen
pretrained encoder's features, conditioned on a positional encoding; the anomaly map is the per-position
unlikelihood, upsampled and summed over levels.

Encoder weights come from :func:`cxrad.backbone.load_pretrained`; loss, optimiser (manual optimisation over
fibre batches) and trainer arguments are anomalib's. No FiLM: use ``metadata_conditioning=normative``.
"""

from __future__ import annotations

from anomalib.models import Cflow

from cxrad.backbone import BackboneConfig
from cxrad.model.common import anomalib_detector
from cxrad.model.conditioning import MetadataSteps
from cxrad.model.registry import register_model


class CxrCflow(MetadataSteps, Cflow):
    """anomalib's CFLOW with metadata in its evaluation steps (built with ``pre_trained=False``)."""


@register_model("cflow")
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
