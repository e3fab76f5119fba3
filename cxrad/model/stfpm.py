"""STFPM (student-teacher feature pyramid matching) on any timm CNN: a frozen pretrained teacher, a student
trained to match its features on ``backbone.layers.stfpm``; the anomaly map is their per-level disagreement.

anomalib 2.7's network always asks the hub for the teacher's weights; cxrad's network builds both without
them and loads the teacher through :func:`cxrad.backbone.load_pretrained` (offline rules as every backbone).
The loss, optimiser and trainer arguments are anomalib's. No FiLM: ``metadata_conditioning=normative``
standardises its maps per metadata instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from anomalib.models import AnomalibModule, Stfpm
from anomalib.models.components import TimmFeatureExtractor
from anomalib.models.image.stfpm.anomaly_map import AnomalyMapGenerator
from anomalib.models.image.stfpm.loss import STFPMLoss
from anomalib.models.image.stfpm.torch_model import STFPMModel
from torch import nn

from cxrad.backbone import BackboneConfig
from cxrad.model.common import anomalib_detector
from cxrad.model.conditioning import MetadataSteps
from cxrad.model.registry import register_model


class CxrStfpmModel(STFPMModel):
    """anomalib's STFPM network (same forward) with the teacher built without a hub download."""

    def __init__(self, layers: Sequence[str], backbone: str) -> None:
        nn.Module.__init__(self)  # STFPMModel.__init__ would download the teacher's weights
        self.tiler = None
        self.backbone = backbone
        self.teacher_model = TimmFeatureExtractor(backbone=backbone, pre_trained=False, layers=layers).eval()
        self.teacher_model.requires_grad_(False)  # the teacher is fixed
        self.student_model = TimmFeatureExtractor(
            backbone=backbone, pre_trained=False, layers=layers, requires_grad=True
        )
        self.anomaly_map_generator = AnomalyMapGenerator()


class CxrStfpm(MetadataSteps, AnomalibModule):
    """anomalib's STFPM module (loss, optimiser, trainer arguments) around :class:`CxrStfpmModel`."""

    def __init__(self, backbone: str, layers: Sequence[str], **kwargs: object) -> None:
        super().__init__(**kwargs)  # pre_processor and anomalib's post-processing flags
        self.model = CxrStfpmModel(layers=list(layers), backbone=backbone)
        self.loss = STFPMLoss()

    training_step = Stfpm.training_step
    configure_optimizers = Stfpm.configure_optimizers  # SGD, lr 0.4, momentum 0.9, weight decay 1e-4
    trainer_arguments = Stfpm.trainer_arguments
    learning_type = Stfpm.learning_type


@register_model("stfpm")
def build_stfpm(backbone: BackboneConfig, image_size: int, seed: int = 0, conditioning: dict | None = None) -> CxrStfpm:
    """STFPM on ``backbone.layers.stfpm``; the teacher gets the backbone's weights, the student starts random."""
    del conditioning  # FiLM is refused by validate (registered without film)
    return anomalib_detector(
        CxrStfpm,
        backbone,
        image_size,
        seed,
        lambda model: model.model.teacher_model.feature_extractor,
        backbone=backbone.timm_name,
        layers=backbone.layers_for("stfpm"),
    )
