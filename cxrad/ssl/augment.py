"""Augmentations for contrastive learning on chest films: geometry and exposure, never colour or laterality."""

from __future__ import annotations

from dataclasses import dataclass

from torchvision.transforms import v2


@dataclass(frozen=True)
class ChestAugmentConfig:
    """One view's random transform (``ssl.augment``).

    Args:
        crop_scale: area range of the random resized crop, as fractions of the film.
        crop_ratio: aspect-ratio range of the crop.
        rotation_degrees: largest rotation either way.
        brightness: brightness jitter factor (0 = none).
        contrast: contrast jitter factor (0 = none).
        horizontal_flip: flip half the views left-right. Off by default: a mirrored chest (heart on the right)
            is not a normal film, and the features should keep telling the sides apart.

    Example:
        >>> ChestAugmentConfig(crop_scale=(0.8, 1.0)).rotation_degrees
        10.0
    """

    crop_scale: tuple[float, float] = (0.6, 1.0)
    crop_ratio: tuple[float, float] = (0.9, 1.1)
    rotation_degrees: float = 10.0
    brightness: float = 0.2
    contrast: float = 0.2
    horizontal_flip: bool = False

    def __post_init__(self) -> None:
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            msg = f"ssl.augment.crop_scale={list(self.crop_scale)} must be 0 < low <= high <= 1, e.g. [0.6, 1.0]"
            raise ValueError(msg)


def build_chest_augment(config: ChestAugmentConfig, image_size: int) -> v2.Compose:
    """The random transform of one view of a preprocessed 3-channel film (float in [0, 1], C x H x W).

    Brightness and contrast act on all three (identical) channels alike, so the view stays grey: no hue or
    saturation jitter, which would teach invariance to colours a film never has.
    """
    steps = [
        v2.RandomResizedCrop(image_size, scale=config.crop_scale, ratio=config.crop_ratio, antialias=True),
        v2.RandomRotation(config.rotation_degrees),
        v2.ColorJitter(brightness=config.brightness, contrast=config.contrast),
    ]
    if config.horizontal_flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)
