"""DFM (deep feature modelling): PCA of average-pooled features of one pretrained layer
(``backbone.layers.dfm``, a one-element list); a film scores its feature reconstruction error (``fre``),
whose per-position map is the anomaly map. Fitted in one pass, like PaDiM.

Backbone weights come from :func:`cxrad.backbone.load_pretrained`; trainer arguments are anomalib's. No FiLM:
use ``metadata_conditioning=normative``.
"""

from __future__ import annotations

from anomalib.models import Dfm
from omegaconf import DictConfig

from cxrad.backbone import BackboneConfig
from cxrad.model.common import anomalib_detector
from cxrad.model.conditioning import MetadataSteps
from cxrad.model.registry import register_model


class CxrDfm(MetadataSteps, Dfm):
    """anomalib's DFM with metadata in its evaluation steps (built with ``pre_trained=False``)."""


def validate_dfm(cfg: DictConfig) -> None:
    """One feature layer, a PCA variance level in (0, 1], the map-producing ``fre`` score."""
    layers = list(cfg.backbone.layers.dfm)
    if len(layers) != 1:
        msg = f"backbone.layers.dfm={layers} must name one layer (DFM models one level), e.g. [{layers[-1]}]"
        raise ValueError(msg)
    detector = cfg.model.detector
    if not 0 < detector.pca_level <= 1:
        msg = f"model.detector.pca_level={detector.pca_level} must be in (0, 1] (the variance the PCA keeps)"
        raise ValueError(msg)
    if detector.score_type != "fre":
        msg = f"model.detector.score_type={detector.score_type} gives no anomaly map (heatmaps need one); use fre"
        raise ValueError(msg)


@register_model("dfm", validate=validate_dfm)
def build_dfm(
    backbone: BackboneConfig,
    image_size: int,
    pooling_kernel_size: int = 4,
    pca_level: float = 0.97,
    score_type: str = "fre",
    seed: int = 0,
    conditioning: dict | None = None,
) -> CxrDfm:
    """DFM on the single layer of ``backbone.layers.dfm``."""
    del conditioning  # FiLM is refused by validate (registered without film)
    (layer,) = backbone.layers_for("dfm")
    return anomalib_detector(
        CxrDfm,
        backbone,
        image_size,
        seed,
        lambda model: model.model.feature_extractor.feature_extractor,
        backbone=backbone.timm_name,
        layer=layer,
        pre_trained=False,
        pooling_kernel_size=pooling_kernel_size,
        pca_level=pca_level,
        score_type=score_type,
    )
