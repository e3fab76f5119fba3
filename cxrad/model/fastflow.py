"""FastFlow (normalising flow on backbone features) on any timm CNN, depth set by ``flow_steps``.

The network is :class:`~cxrad.model.components.conditional_flow.ConditionalFastflowModel`: anomalib's
FastFlow maths on the feature levels named in ``backbone.layers.fastflow`` (resnet18: ``layer1..3``;
EfficientNets: ``blocks.1, blocks.2, blocks.4``; strides 4/8/16 in both), so EfficientNet-B0/Lite0 work too
(anomalib 2.7's own FastFlow rejects them). Loss, optimiser and trainer arguments are anomalib's.

With ``metadata_conditioning=film`` the flow is conditional: the encoded metadata, broadcast over each level's
positions, enters every coupling block's subnet (FrEIA ``dims_c``), and the whole flow is trained by the
likelihood ``p(z | m)``, so the score (anomalib's per-position ``-exp(-mean z^2 / 2)``) is the unlikelihood of
the features *given* the film's age, sex and view. This replaces an earlier FiLM of the features before the
flow: a conditional coupling can already scale and shift every channel by functions of the metadata (and
more, since they also see the features), so one mechanism is kept; nothing is added to the log-determinant by
hand. The option keeps the name ``film`` because it is the trained end-to-end conditioning of every detector.
"""

from __future__ import annotations

import torch
from anomalib.data import Batch
from anomalib.models import AnomalibModule, Fastflow
from anomalib.models.image.fastflow.loss import FastflowLoss
from anomalib.pre_processing import PreProcessor
from lightning.pytorch.utilities.types import STEP_OUTPUT
from omegaconf import DictConfig

from cxrad.backbone import BackboneConfig, load_pretrained
from cxrad.data.metadata import covariate_columns
from cxrad.metadata_conditioning.options import conditions_features
from cxrad.model.common import NO_ANOMALIB_POSTPROCESSING, pre_processor
from cxrad.model.components.conditional_flow import ConditionalFastflowModel
from cxrad.model.conditioning import MetadataSteps, metadata_of
from cxrad.model.registry import register_model


class CxrFastflow(MetadataSteps, AnomalibModule):
    """anomalib's FastFlow module (loss, optimiser, trainer arguments) around cxrad's FastFlow network.

    Not a subclass of anomalib's ``Fastflow``: its ``__init__`` builds anomalib's network, which rejects
    EfficientNets. Its training settings are reused as they are.

    Args:
        timm_name: timm architecture of the frozen backbone.
        layers: its feature modules, one flow per module.
        flow_steps: coupling blocks per level.
        conv3x3_only: 3x3 convolutions in every subnet.
        hidden_ratio: subnet hidden width over its input width.
        metadata_dim: length of the metadata encoding the couplings read; 0 for unconditional FastFlow.
        metadata_columns: the columns of the batch's encoding they read (the configured covariates; None: all).
        pre_processor: resize and normalisation; sets the flows' input size.
        post_processor: anomalib's post-processor (cxrad passes False).
        evaluator: anomalib's metrics (cxrad passes False).
        visualizer: anomalib's visualiser (cxrad passes False).
    """

    def __init__(
        self,
        timm_name: str,
        layers: list[str],
        flow_steps: int = 8,
        conv3x3_only: bool = False,
        hidden_ratio: float = 1.0,
        metadata_dim: int = 0,
        metadata_columns: list[int] | None = None,
        pre_processor: PreProcessor | bool = True,
        post_processor: bool = True,
        evaluator: bool = True,
        visualizer: bool = True,
    ) -> None:
        super().__init__(
            pre_processor=pre_processor, post_processor=post_processor, evaluator=evaluator, visualizer=visualizer
        )
        if self.input_size is None:
            msg = "FastFlow needs a pre_processor with a Resize to know its input size"
            raise ValueError(msg)
        self.model = ConditionalFastflowModel(
            input_size=self.input_size,
            timm_name=timm_name,
            layers=layers,
            flow_steps=flow_steps,
            conv3x3_only=conv3x3_only,
            hidden_ratio=hidden_ratio,
            metadata_dim=metadata_dim,
            metadata_columns=metadata_columns,
        )
        self.loss = FastflowLoss()

    configure_optimizers = Fastflow.configure_optimizers  # Adam, lr 1e-3, weight decay 1e-5
    trainer_arguments = Fastflow.trainer_arguments
    learning_type = Fastflow.learning_type

    def training_step(self, batch: Batch, *args: object, **kwargs: object) -> STEP_OUTPUT:
        """anomalib's FastFlow step with the batch's metadata in the forward."""
        del args, kwargs
        with metadata_of(self.model, batch):
            hidden_variables, jacobians = self.model(batch.image)
        loss = self.loss(hidden_variables, jacobians)
        self.log("train_loss", loss.item(), on_epoch=True, prog_bar=True, logger=True)
        return {"loss": loss}


def validate_fastflow(cfg: DictConfig) -> None:
    """The flows' input size comes from the pre-processor and must be a multiple of 32."""
    size = cfg.preprocessing.image_size
    if size % 32:
        fix = max(32, size // 32 * 32)
        msg = f"model=fastflow needs preprocessing.image_size divisible by 32, got {size}; try {fix}"
        raise ValueError(msg)


@register_model("fastflow", film=True, validate=validate_fastflow)
def build_fastflow(
    backbone: BackboneConfig,
    image_size: int,
    flow_steps: int = 8,
    hidden_ratio: float = 1.0,
    conv3x3_only: bool = False,
    seed: int = 0,
    conditioning: dict | None = None,
) -> CxrFastflow:
    """FastFlow on ``backbone.layers.fastflow``, conditional on metadata with ``conditioning=film``.

    ``image_size`` must be a multiple of 32 (checked by ``validate``).
    """
    columns = covariate_columns((conditioning or {}).get("covariates"))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CxrFastflow(
            timm_name=backbone.timm_name,
            layers=backbone.layers_for("fastflow"),
            flow_steps=flow_steps,
            conv3x3_only=conv3x3_only,
            hidden_ratio=hidden_ratio,
            metadata_dim=len(columns) if conditions_features(conditioning) else 0,
            # Always the base columns: a table with extra views/covariates appends features the flows do not read.
            metadata_columns=columns,
            pre_processor=pre_processor(image_size, backbone),
            **NO_ANOMALIB_POSTPROCESSING,
        )
    load_pretrained(model.model.feature_extractor, backbone)
    return model
