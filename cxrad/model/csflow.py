"""CS-Flow: a fully convolutional cross-scale normalising flow on frozen pretrained features of one deep layer
(``backbone.layers.csflow``) at three scales of the film; the anomaly map is the product of the scales' likelihood
maps, the film's score the mean squared latent over all scales (anomalib's).

The paper reads torchvision's ImageNet EfficientNet-B5 at ``features.6.8`` (its 304-channel, stride-32 stage).
cxrad reads the run's timm backbone instead, with the same weight rules as every other model, and each backbone
config names its stride-32 level: EfficientNet's ``blocks.6`` (timm exposes no earlier stride-32 stage), a ResNet's
``layer4``. anomalib's flow hard-codes B5's 304 channels and stride 32, so the flow here is built for
the chosen layer's channels and map sizes. Loss, optimiser, coupling blocks and trainer arguments are anomalib's.
No FiLM: use ``metadata_conditioning=normative``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from anomalib.models import Csflow
from anomalib.models.components import TimmFeatureExtractor
from anomalib.models.image.csflow.anomaly_map import AnomalyMapGenerator, AnomalyMapMode
from anomalib.models.image.csflow.loss import CsFlowLoss
from anomalib.models.image.csflow.torch_model import (
    CrossScaleFlow,
    CsFlowModel,
    ParallelGlowCouplingLayer,
    ParallelPermute,
)
from FrEIA.framework import GraphINN, InputNode, Node, OutputNode
from omegaconf import DictConfig
from torch import nn

from cxrad.backbone import BackboneConfig
from cxrad.backbone.weights import feature_layer_strides
from cxrad.model.common import anomalib_detector
from cxrad.model.conditioning import MetadataSteps
from cxrad.model.registry import register_model

SCALES = 3  # the film at full, half and quarter size
MIN_MAP = 2  # the quarter-size film's feature map must be at least 2 x 2 (the flow's cross-scale convolutions)


class BackboneMultiScaleFeatures(nn.Module):
    """One timm layer's features of the film at full, half and quarter size (anomalib's extractor, any layer)."""

    def __init__(self, backbone: BackboneConfig, layer: str, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.layer = layer
        self.input_size = input_size
        self.feature_extractor = TimmFeatureExtractor(backbone=backbone.timm_name, layers=[layer], pre_trained=False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        height, width = self.input_size
        scaled = [images] + [F.interpolate(images, size=(height // 2**s, width // 2**s)) for s in range(1, SCALES)]
        return [self.feature_extractor(film)[self.layer] for film in scaled]

    @torch.no_grad()
    def output_dims(self) -> list[tuple[int, int, int]]:
        """(channels, height, width) of each scale's feature map, from one forward pass of a blank film."""
        was_training = self.training
        self.eval()
        maps = self(torch.zeros(1, 3, *self.input_size))
        self.train(was_training)
        return [tuple(int(n) for n in feature.shape[1:]) for feature in maps]


class LayerCrossScaleFlow(CrossScaleFlow):
    """anomalib's cross-scale flow for any feature maps: its graph fixes B5's 304 channels and stride 32, so the
    graph is rebuilt here with the same nodes (permutations, coupling layers, kernel sizes) on ``feature_dims``."""

    def __init__(
        self,
        input_dims: tuple[int, int, int],
        feature_dims: list[tuple[int, int, int]],
        n_coupling_blocks: int,
        clamp: float,
        cross_conv_hidden_channels: int,
    ) -> None:
        self.feature_dims = feature_dims  # read by _create_graph, which CrossScaleFlow.__init__ calls
        super().__init__(input_dims, n_coupling_blocks, clamp, cross_conv_hidden_channels)

    def _create_graph(self) -> GraphINN:
        nodes: list[Node] = [InputNode(*dims, name=f"input{index}") for index, dims in enumerate(self.feature_dims)]
        for block in range(self.n_coupling_blocks):
            nodes.append(
                Node(
                    inputs=[nodes[-3].out0, nodes[-2].out0, nodes[-1].out0]
                    if block == 0
                    else [nodes[-1].out0, nodes[-1].out1, nodes[-1].out2],
                    module_type=ParallelPermute,
                    module_args={"seed": block},
                    name=f"permute_{block}",
                )
            )
            nodes.append(
                Node(
                    inputs=[nodes[-1].out0, nodes[-1].out1, nodes[-1].out2],
                    module_type=ParallelGlowCouplingLayer,
                    module_args={
                        "clamp": self.clamp,
                        "subnet_args": {
                            "channels_hidden": self.cross_conv_hidden_channels,
                            "kernel_size": self.kernel_sizes[block],
                        },
                    },
                    name=f"fc1_{block}",
                )
            )
        last = nodes[-1]
        nodes.extend(OutputNode([getattr(last, f"out{s}")], name=f"output_end{s}") for s in range(SCALES))
        return GraphINN(nodes)


class CxrCsFlowModel(CsFlowModel):
    """anomalib's CS-Flow network (same forward, scores and maps) on :class:`BackboneMultiScaleFeatures`."""

    def __init__(
        self,
        backbone: BackboneConfig,
        layer: str,
        input_size: tuple[int, int],
        cross_conv_hidden_channels: int,
        n_coupling_blocks: int,
        clamp: int,
    ) -> None:
        nn.Module.__init__(self)  # CsFlowModel.__init__ builds anomalib's downloading B5 extractor
        self.input_dims = (3, *input_size)
        self.clamp = clamp
        self.cross_conv_hidden_channels = cross_conv_hidden_channels
        self.feature_extractor = BackboneMultiScaleFeatures(backbone, layer, input_size).eval()
        self.graph = LayerCrossScaleFlow(
            self.input_dims, self.feature_extractor.output_dims(), n_coupling_blocks, clamp, cross_conv_hidden_channels
        )
        self.anomaly_map_generator = AnomalyMapGenerator(input_dims=self.input_dims, mode=AnomalyMapMode.ALL)


class CxrCsflow(MetadataSteps, Csflow):
    """anomalib's CS-Flow module (loss, Adam, gradient clipping) around :class:`CxrCsFlowModel`."""

    def __init__(
        self,
        backbone_config: BackboneConfig,
        image_size: int,
        cross_conv_hidden_channels: int,
        n_coupling_blocks: int,
        clamp: int,
        **anomalib_args: object,
    ) -> None:
        # Csflow.__init__ would build anomalib's network; its parent's takes the pre-processor and flags.
        super(Csflow, self).__init__(**anomalib_args)
        self.cross_conv_hidden_channels = cross_conv_hidden_channels
        self.n_coupling_blocks = n_coupling_blocks
        self.clamp = clamp
        self.num_channels = 3
        (layer,) = backbone_config.layers_for("csflow")
        self.model = CxrCsFlowModel(
            backbone_config, layer, (image_size, image_size), cross_conv_hidden_channels, n_coupling_blocks, clamp
        )
        self.loss = CsFlowLoss()


def validate_csflow(cfg: DictConfig) -> None:
    """One feature layer, and a film size whose three scales give feature maps that halve exactly, down to 2 x 2."""
    layers = list(cfg.backbone.layers.csflow)
    if len(layers) != 1:
        msg = f"backbone.layers.csflow={layers} must name one layer (CS-Flow reads one level at three scales)"
        raise ValueError(msg)
    stride = feature_layer_strides(cfg.backbone.timm_name)[layers[0]]
    step = stride * 2 ** (SCALES - 1)
    size = cfg.preprocessing.image_size
    if size % step or size // step < MIN_MAP:
        fix = max(MIN_MAP, round(size / step)) * step
        msg = (
            f"model=csflow on backbone.layers.csflow={layers} (stride {stride}) needs preprocessing.image_size a "
            f"multiple of {step} and at least {MIN_MAP * step} (its quarter-size film must give a {MIN_MAP} x "
            f"{MIN_MAP} map), got {size}; set preprocessing.image_size={fix} or choose a shallower layer"
        )
        raise ValueError(msg)


@register_model("csflow", validate=validate_csflow)
def build_csflow(
    backbone: BackboneConfig,
    image_size: int,
    cross_conv_hidden_channels: int = 1024,
    n_coupling_blocks: int = 4,
    clamp: int = 3,
    seed: int = 0,
    conditioning: dict | None = None,
) -> CxrCsflow:
    """CS-Flow with anomalib's defaults on the single layer of ``backbone.layers.csflow``."""
    del conditioning  # FiLM is refused by validate (registered without film)
    return anomalib_detector(
        CxrCsflow,
        backbone,
        image_size,
        seed,
        lambda model: model.model.feature_extractor.feature_extractor.feature_extractor,
        backbone_config=backbone,
        image_size=image_size,
        cross_conv_hidden_channels=cross_conv_hidden_channels,
        n_coupling_blocks=n_coupling_blocks,
        clamp=clamp,
    )
