"""EfficientAd: a student and an autoencoder trained against a frozen pretrained PDN teacher, with an ImageNet
penalty that keeps the student from imitating the teacher off the training distribution.

Its assets are not timm backbones, so it has no ``backbone`` (runs report ``backbone: none``) and anomalib's
downloads are replaced by two local paths, checked by ``validate`` before anything runs:

- ``model.detector.teacher_weights``: anomalib's ``pretrained_teacher_<small|medium>.pth`` (from its
  ``efficientad_pretrained_weights.zip`` release), or ``random`` for an untrained teacher (tests only);
- ``model.detector.imagenet_dir``: an ImageFolder of natural images for the penalty (anomalib uses ImageNette).

cxrad fits without a validation loader, so the map-normalising quantiles anomalib takes from normal validation
films are taken from the (normal) training films at the end of the fit. Loss and model are anomalib's; the
teacher's channel statistics are computed on the training films as anomalib does. No FiLM: use
``metadata_conditioning=normative``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from anomalib.models import EfficientAd
from omegaconf import DictConfig
from torchvision.datasets import ImageFolder

from cxrad.model.common import NO_ANOMALIB_POSTPROCESSING, pre_processor, seeded
from cxrad.model.conditioning import MetadataSteps
from cxrad.model.registry import register_model

log = logging.getLogger(__name__)
RANDOM_TEACHER = "random"
MIN_SIZE = 256
WEIGHTS_HINT = (
    "anomalib's efficientad_pretrained_weights.zip (github.com/open-edge-platform/anomalib releases, "
    "tag efficientad_pretrained_weights) holds pretrained_teacher_small.pth and pretrained_teacher_medium.pth"
)


class CxrEfficientAd(MetadataSteps, EfficientAd):
    """anomalib's EfficientAd fed from local paths, trained from plain dataloaders (no datamodule).

    Args:
        teacher_weights: the teacher's state-dict file, or ``'random'``.
        imagenet_dir: ImageFolder of natural images for the penalty.
        **kwargs: anomalib's EfficientAd arguments.
    """

    def __init__(self, teacher_weights: str, imagenet_dir: str, **kwargs: object) -> None:
        super().__init__(imagenet_dir=imagenet_dir, **kwargs)
        self.teacher_weights = teacher_weights

    def prepare_pretrained_model(self) -> None:
        """Load the teacher from ``teacher_weights`` (anomalib would download it)."""
        if self.teacher_weights == RANDOM_TEACHER:
            log.warning("EfficientAd uses a RANDOM teacher (model.detector.teacher_weights=random)")
            return
        state = torch.load(self.teacher_weights, map_location=self.device, weights_only=True)
        self.model.teacher.load_state_dict(state)

    def on_train_start(self) -> None:
        """anomalib's preparation (teacher, ImageNet images, teacher statistics) on the trainer's train loader."""
        loader = self.trainer.train_dataloader
        self.prepare_pretrained_model()
        self.prepare_imagenette_data(next(iter(loader)).image.shape[-2:])
        if not self.model.is_set(self.model.mean_std):
            self.model.mean_std.update(self.teacher_channel_mean_std(loader))

    def on_train_end(self) -> None:
        """Map-normalising quantiles from the training films (anomalib takes normal validation films)."""
        self.model.eval()
        self.model.quantiles.update(self.map_norm_quantiles(self.trainer.train_dataloader))

    def configure_optimizers(self) -> dict:
        """anomalib's Adam and step decay at 95% of training, with the step count from the trainer."""
        optimizer = torch.optim.Adam(
            list(self.model.student.parameters()) + list(self.model.ae.parameters()),
            lr=self.lr,
            weight_decay=self.weight_decay,
        )
        steps = max(1, int(0.95 * self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, steps, gamma=0.1)}


def validate_efficient_ad(cfg: DictConfig) -> None:
    """Films of at least 256 px, and the teacher weights file and the ImageNet folder exist (nothing is downloaded)."""
    size = cfg.preprocessing.image_size
    if size < MIN_SIZE:
        msg = (
            f"model=efficient_ad needs preprocessing.image_size >= {MIN_SIZE} (its autoencoder's encoder reduces "
            f"{MIN_SIZE} px to 1x1), got {size}; set preprocessing.image_size={MIN_SIZE}"
        )
        raise ValueError(msg)
    detector = cfg.model.detector
    weights = detector.teacher_weights
    if weights != RANDOM_TEACHER and (weights is None or not Path(str(weights)).expanduser().is_file()):
        msg = (
            f"model=efficient_ad needs its pretrained teacher: model.detector.teacher_weights={weights} is not a file; "
            f"pass the path of pretrained_teacher_{detector.model_size}.pth ({WEIGHTS_HINT}), or "
            f"model.detector.teacher_weights=random (tests only)"
        )
        raise ValueError(msg)
    folder = detector.imagenet_dir
    if folder is None or not Path(str(folder)).expanduser().is_dir():
        msg = (
            f"model=efficient_ad needs natural images for its penalty: model.detector.imagenet_dir={folder} is not a "
            "directory; pass an ImageFolder (one subfolder per class) such as an extracted ImageNette "
            "(github.com/fastai/imagenette)"
        )
        raise ValueError(msg)
    try:
        ImageFolder(str(Path(str(folder)).expanduser()))
    except (FileNotFoundError, RuntimeError) as error:
        msg = (
            f"model.detector.imagenet_dir={folder} holds no class subfolders with images ({error}); give an ImageFolder"
        )
        raise ValueError(msg) from error


@register_model("efficient_ad", uses_backbone=False, validate=validate_efficient_ad)
def build_efficient_ad(
    image_size: int,
    teacher_weights: str | None = None,
    imagenet_dir: str | None = None,
    model_size: str = "small",
    teacher_out_channels: int = 384,
    lr: float = 1e-4,
    weight_decay: float = 1e-5,
    seed: int = 0,
    conditioning: dict | None = None,
    backbone: None = None,
) -> CxrEfficientAd:
    """EfficientAd (``model_size`` small | medium); the teacher normalises its input itself (no Normalize)."""
    del conditioning, backbone  # FiLM is refused by validate; EfficientAd has no timm backbone
    with seeded(seed):
        return CxrEfficientAd(
            teacher_weights=str(teacher_weights),
            imagenet_dir=str(Path(str(imagenet_dir)).expanduser()),
            teacher_out_channels=teacher_out_channels,
            model_size=model_size,
            lr=lr,
            weight_decay=weight_decay,
            pre_processor=pre_processor(image_size, None),
            **NO_ANOMALIB_POSTPROCESSING,
        )
