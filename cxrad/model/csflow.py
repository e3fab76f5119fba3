"""CS-Flow: a fully convolutional cross-scale normalising flow on a frozen ImageNet EfficientNet-B5's features
(``features.6.8``) at three scales of the film; the anomaly map is the product of the scales' likelihood maps.

Its encoder is fixed by the method (torchvision's EfficientNet-B5, not a timm backbone), so it has no
``backbone`` (runs report ``backbone: none``). anomalib 2.7 downloads those weights on construction; cxrad
builds the encoder without them and loads ``model.detector.encoder_weights``: torchvision's state-dict file
(by default where torchvision's own download puts it, in torch's hub cache), or ``random`` (tests only). Loss,
optimiser and trainer arguments are anomalib's. No FiLM: use ``metadata_conditioning=normative``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from anomalib.models import Csflow
from anomalib.models.components import TimmFeatureExtractor
from anomalib.models.image.csflow.anomaly_map import AnomalyMapGenerator, AnomalyMapMode
from anomalib.models.image.csflow.loss import CsFlowLoss
from anomalib.models.image.csflow.torch_model import CrossScaleFlow, CsFlowModel, CsFlowMultiScaleFeatureExtractor
from anomalib.pre_processing import PreProcessor
from omegaconf import DictConfig
from torch import nn
from torchvision.models import EfficientNet_B5_Weights, efficientnet_b5
from torchvision.transforms.v2 import Compose, Normalize, Resize

from cxrad.model.common import NO_ANOMALIB_POSTPROCESSING, seeded
from cxrad.model.conditioning import MetadataSteps
from cxrad.model.registry import register_model

log = logging.getLogger(__name__)
RANDOM_ENCODER = "random"
LAYER = "features.6.8"  # the layer anomalib's CS-Flow reads
SCALES = 3  # the film at full, half and quarter size
# features.6.8 has stride 32, so the quarter-size film must still give a map of at least 2 x 2 positions.
MIN_SIZE = 256
WEIGHTS = EfficientNet_B5_Weights.IMAGENET1K_V1
IMAGENET_MEAN, IMAGENET_STD = WEIGHTS.transforms().mean, WEIGHTS.transforms().std


def default_encoder_weights() -> Path:
    """Where ``torchvision`` keeps its EfficientNet-B5 download (torch's hub cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(WEIGHTS.url).name


def encoder_weights_path(setting: str | None) -> Path | None:
    """The encoder's state-dict file for ``model.detector.encoder_weights`` (None for ``random``)."""
    if setting == RANDOM_ENCODER:
        return None
    return default_encoder_weights() if setting is None else Path(str(setting)).expanduser()


class CxrCsFlowFeatureExtractor(CsFlowMultiScaleFeatureExtractor):
    """anomalib's multi-scale extractor (same forward) around an EfficientNet-B5 built without a download."""

    def __init__(self, input_size: tuple[int, int], weights: Path | None) -> None:
        nn.Module.__init__(self)  # the parent's __init__ would download the weights
        self.n_scales = SCALES
        self.input_size = input_size
        network = efficientnet_b5(weights=None)
        if weights is None:
            log.warning("CS-Flow uses a RANDOM EfficientNet-B5 encoder (model.detector.encoder_weights=random)")
        else:
            network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.feature_extractor = TimmFeatureExtractor(backbone=network, layers=[LAYER])


class CxrCsFlowModel(CsFlowModel):
    """anomalib's CS-Flow network (same forward and scores) with :class:`CxrCsFlowFeatureExtractor`."""

    def __init__(
        self,
        input_size: tuple[int, int],
        weights: Path | None,
        cross_conv_hidden_channels: int,
        n_coupling_blocks: int,
        clamp: int,
    ) -> None:
        nn.Module.__init__(self)  # CsFlowModel.__init__ builds anomalib's downloading extractor
        self.input_dims = (3, *input_size)
        self.clamp = clamp
        self.cross_conv_hidden_channels = cross_conv_hidden_channels
        self.feature_extractor = CxrCsFlowFeatureExtractor(input_size, weights).eval()
        self.graph = CrossScaleFlow(
            input_dims=self.input_dims,
            n_coupling_blocks=n_coupling_blocks,
            clamp=clamp,
            cross_conv_hidden_channels=cross_conv_hidden_channels,
        )
        self.anomaly_map_generator = AnomalyMapGenerator(input_dims=self.input_dims, mode=AnomalyMapMode.ALL)


class CxrCsflow(MetadataSteps, Csflow):
    """anomalib's CS-Flow module (loss, Adam, gradient clipping) around :class:`CxrCsFlowModel`."""

    def __init__(
        self,
        weights: Path | None,
        cross_conv_hidden_channels: int,
        n_coupling_blocks: int,
        clamp: int,
        pre_processor: PreProcessor,
    ) -> None:
        # Csflow.__init__ would build anomalib's network; its parent's sets up the pre-processor and flags.
        super(Csflow, self).__init__(pre_processor=pre_processor, **NO_ANOMALIB_POSTPROCESSING)
        self.cross_conv_hidden_channels = cross_conv_hidden_channels
        self.n_coupling_blocks = n_coupling_blocks
        self.clamp = clamp
        self.num_channels = 3
        self.model = CxrCsFlowModel(self.input_size, weights, cross_conv_hidden_channels, n_coupling_blocks, clamp)
        self.loss = CsFlowLoss()


def validate_csflow(cfg: DictConfig) -> None:
    """Films of at least 256 px (divisible by 128), and the encoder's weights file exists (nothing is downloaded)."""
    size = cfg.preprocessing.image_size
    if size < MIN_SIZE or size % 128:
        msg = (
            f"model=csflow needs preprocessing.image_size >= {MIN_SIZE} and divisible by 128 (its quarter-size "
            f"film must give EfficientNet-B5 maps of 2 x 2 or more), got {size}; set preprocessing.image_size=256"
        )
        raise ValueError(msg)
    setting = cfg.model.detector.encoder_weights
    path = encoder_weights_path(setting)
    if path is not None and not path.is_file():
        msg = (
            f"model=csflow needs torchvision's ImageNet EfficientNet-B5 weights: {path} is not a file "
            f"(model.detector.encoder_weights={setting}); download {WEIGHTS.url} there or pass its path, or "
            "model.detector.encoder_weights=random (tests only)"
        )
        raise ValueError(msg)


@register_model("csflow", uses_backbone=False, validate=validate_csflow)
def build_csflow(
    image_size: int,
    encoder_weights: str | None = None,
    cross_conv_hidden_channels: int = 1024,
    n_coupling_blocks: int = 4,
    clamp: int = 3,
    seed: int = 0,
    conditioning: dict | None = None,
    backbone: None = None,
) -> CxrCsflow:
    """CS-Flow with anomalib's defaults; ``encoder_weights``: a state-dict path, None (hub cache) or ``random``."""
    del conditioning, backbone  # FiLM is refused by validate; the encoder is fixed by the method
    transform = Compose([Resize((image_size, image_size), antialias=True), Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    with seeded(seed):
        return CxrCsflow(
            encoder_weights_path(encoder_weights),
            cross_conv_hidden_channels,
            n_coupling_blocks,
            clamp,
            PreProcessor(transform=transform),
        )
