"""FastFlow on any timm CNN, optionally a conditional flow whose coupling blocks read the metadata.

anomalib 2.7's ``FastflowModel`` builds its feature pyramid only for resnet18/wide_resnet50_2 (and two
transformers) and takes no condition. :class:`ConditionalFastflowModel` keeps its maths and parameter layout
(a frozen timm ``features_only`` backbone, a trainable LayerNorm per level, one FrEIA ``SequenceINN`` of
anomalib ``AllInOneBlock`` couplings per level, anomalib's ``AnomalyMapGenerator``) and changes two things:

- the levels are any timm feature modules, named in ``conf/backbone/<name>.yaml`` (``layers.fastflow``);
- with ``metadata_dim > 0`` every coupling block is conditional (FrEIA ``dims_c``): the encoded metadata,
  broadcast to a ``(B, metadata_dim, H, W)`` map of the level's size, is concatenated to the passive half
  the block's subnet reads, so the scale and shift of the active half depend on (features, metadata). The
  flow is then a density ``p(z | m)`` trained end to end by its likelihood. The subnets' weights on the
  condition start at zero: the untrained conditional flow computes exactly the unconditional one.

Without metadata the network is anomalib's: same parameter names and, for the same seed on resnet18, the same
initial weights and outputs (anomalib FastFlow checkpoints load into it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import timm
import torch
from anomalib.data import InferenceBatch
from anomalib.models.components.flow import AllInOneBlock
from anomalib.models.image.fastflow.anomaly_map import AnomalyMapGenerator
from anomalib.models.image.fastflow.torch_model import create_fast_flow_block
from FrEIA.framework import SequenceINN
from torch import nn

from cxrad.backbone.weights import feature_layer_names, validate_layers


def feature_indices(timm_name: str, layers: Sequence[str]) -> list[int]:
    """timm ``out_indices`` of the named feature modules, e.g. resnet18 ``['layer1', 'layer2']`` -> ``[1, 2]``.

    Raises:
        ValueError: naming the valid modules when a layer is not one timm returns.
    """
    with torch.random.fork_rng():  # listing the modules builds a throwaway model: keep the caller's RNG intact
        validate_layers(timm_name, layers)
        names = feature_layer_names(timm_name)
    return [names.index(layer) for layer in layers]


def conditional_subnet(kernel_size: int, hidden_ratio: float, condition_channels: int) -> Callable:
    """anomalib's FastFlow subnet (conv, ReLU, conv) with ``condition_channels`` extra input channels.

    ``AllInOneBlock`` calls it as ``f(passive_half + condition_channels, out_channels)`` and concatenates the
    condition after the passive half. The hidden width follows the passive half alone, as in the unconditional
    subnet, and the first conv's weights on the condition start at zero.
    """

    def subnet(in_channels: int, out_channels: int) -> nn.Sequential:
        feature_channels = in_channels - condition_channels
        hidden_channels = int(feature_channels * hidden_ratio)
        first = nn.Conv2d(in_channels, hidden_channels, kernel_size, padding="same")
        with torch.no_grad():
            first.weight[:, feature_channels:] = 0.0
        return nn.Sequential(first, nn.ReLU(), nn.Conv2d(hidden_channels, out_channels, kernel_size, padding="same"))

    return subnet


def create_conditional_flow_block(
    input_dimensions: Sequence[int],
    condition_channels: int,
    conv3x3_only: bool,
    hidden_ratio: float,
    flow_steps: int,
    clamp: float = 2.0,
) -> SequenceINN:
    """anomalib's ``create_fast_flow_block`` with every coupling conditioned on condition 0 of ``c``.

    Example:
        >>> flow = create_conditional_flow_block([4, 2, 2], 3, conv3x3_only=False, hidden_ratio=1.0, flow_steps=2)
        >>> z, log_jac = flow(torch.randn(5, 4, 2, 2), c=[torch.randn(5, 3, 2, 2)])
        >>> z.shape, log_jac.shape
        (torch.Size([5, 4, 2, 2]), torch.Size([5]))
    """
    _, height, width = input_dimensions
    flow = SequenceINN(*input_dimensions)
    for step in range(flow_steps):
        kernel_size = 1 if step % 2 == 1 and not conv3x3_only else 3
        flow.append(
            AllInOneBlock,
            cond=0,
            cond_shape=(condition_channels, height, width),  # AllInOneBlock requires the input's spatial size
            subnet_constructor=conditional_subnet(kernel_size, hidden_ratio, condition_channels),
            affine_clamping=clamp,
            permute_soft=False,
        )
    return flow


class ConditionalFastflowModel(nn.Module):
    """FastFlow on a timm CNN's feature pyramid; a conditional flow ``p(z | m)`` when ``metadata_dim > 0``.

    Args:
        input_size: model input ``(H, W)``, divisible by the deepest level's stride.
        timm_name: timm architecture of the (frozen) backbone.
        layers: feature modules, one flow per module (e.g. ``['layer1', 'layer2', 'layer3']``).
        flow_steps: coupling blocks per level.
        conv3x3_only: 3x3 convolutions in every subnet (else 3x3 and 1x1 alternate).
        hidden_ratio: subnet hidden width over its feature input width.
        metadata_dim: length of the metadata encoding fed to every coupling; 0 for unconditional FastFlow.

    Raises:
        ValueError: when ``input_size`` does not divide by a level's stride or a layer is unknown to timm.

    Example:
        >>> model = ConditionalFastflowModel((64, 64), "resnet18", ["layer1", "layer2"], flow_steps=2, metadata_dim=3)
        >>> model.metadata = torch.eye(3)[:2]
        >>> model.eval()(torch.rand(2, 3, 64, 64)).anomaly_map.shape
        torch.Size([2, 1, 64, 64])
    """

    metadata: torch.Tensor | None = None  # set for one forward pass by cxrad.model.conditioning.metadata_of

    def __init__(
        self,
        input_size: tuple[int, int],
        timm_name: str,
        layers: Sequence[str],
        flow_steps: int = 8,
        conv3x3_only: bool = False,
        hidden_ratio: float = 1.0,
        metadata_dim: int = 0,
        metadata_columns: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.input_size = tuple(input_size)
        self.metadata_dim = metadata_dim
        self.metadata_columns = metadata_columns  # the covariates' columns of the batch's encoding (None: all)
        self.feature_extractor = timm.create_model(
            timm_name, pretrained=False, features_only=True, out_indices=feature_indices(timm_name, layers)
        )
        self.feature_extractor.requires_grad_(False)
        shapes = self._level_shapes(timm_name)
        self.norms = nn.ModuleList(nn.LayerNorm(shape, elementwise_affine=True) for shape in shapes)
        self.fast_flow_blocks = nn.ModuleList(
            self._flow(shape, flow_steps, conv3x3_only, hidden_ratio) for shape in shapes
        )
        self.anomaly_map_generator = AnomalyMapGenerator(input_size=self.input_size)

    def _level_shapes(self, timm_name: str) -> list[list[int]]:
        info = self.feature_extractor.feature_info
        height, width = self.input_size
        for stride in info.reduction():
            if height % stride or width % stride:
                msg = f"FastFlow on {timm_name} needs an input size divisible by {stride}, got {self.input_size}"
                raise ValueError(msg)
        return [
            [channels, height // s, width // s] for channels, s in zip(info.channels(), info.reduction(), strict=True)
        ]

    def _flow(self, shape: list[int], flow_steps: int, conv3x3_only: bool, hidden_ratio: float) -> SequenceINN:
        if self.metadata_dim == 0:
            return create_fast_flow_block(shape, conv3x3_only, hidden_ratio, flow_steps)
        return create_conditional_flow_block(shape, self.metadata_dim, conv3x3_only, hidden_ratio, flow_steps)

    def condition_convs(self) -> list[nn.Conv2d]:
        """The first conv of every coupling subnet; its last ``metadata_dim`` input channels read the metadata."""
        return [coupling.subnet[0] for flow in self.fast_flow_blocks for coupling in flow]

    def _condition(self, reference: torch.Tensor) -> torch.Tensor | None:
        """The ``(B, metadata_dim)`` metadata on ``reference``'s device and dtype; None when unconditional."""
        if self.metadata_dim == 0:
            return None
        if self.metadata is None:
            msg = "metadata-conditioned FastFlow got a batch without metadata; use cxrad's CxrBatch loaders"
            raise ValueError(msg)
        columns = self.metadata_columns
        if columns is not None and (self.metadata.ndim != 2 or self.metadata.shape[1] <= max(columns, default=-1)):
            msg = (
                f"FastFlow reads metadata columns {list(columns)}, got metadata of shape {tuple(self.metadata.shape)}; "
                "encode the films with cxrad's MetadataEncoder"
            )
            raise ValueError(msg)
        metadata = self.metadata if columns is None else self.metadata[:, columns]
        if metadata.shape != (reference.shape[0], self.metadata_dim):
            msg = f"FastFlow expects metadata of shape (batch, {self.metadata_dim}), got {tuple(metadata.shape)}"
            raise ValueError(msg)
        return metadata.to(reference)

    def forward(self, input_tensor: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]] | InferenceBatch:
        """Training: ``(z per level, log|det J| per level)``; evaluation: anomalib's anomaly map and score."""
        self.feature_extractor.eval()
        features = [
            norm(feature) for norm, feature in zip(self.norms, self.feature_extractor(input_tensor), strict=True)
        ]
        metadata = self._condition(input_tensor)
        hidden_variables, log_jacobians = [], []
        for flow, feature in zip(self.fast_flow_blocks, features, strict=True):
            condition = None if metadata is None else [metadata[..., None, None].expand(-1, -1, *feature.shape[2:])]
            hidden_variable, log_jacobian = flow(feature, c=condition)
            hidden_variables.append(hidden_variable)
            log_jacobians.append(log_jacobian)
        if self.training:
            return hidden_variables, log_jacobians
        anomaly_map = self.anomaly_map_generator(hidden_variables)
        return InferenceBatch(pred_score=torch.amax(anomaly_map, dim=(-2, -1)), anomaly_map=anomaly_map)
