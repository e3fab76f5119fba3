"""Decode any chest film to 8-bit grayscale and turn it into the network's 3-channel input."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import cv2
import numpy as np

from cxrad.preprocessing.dicom import DecodeError, is_dicom, read_dicom
from cxrad.preprocessing.roi import check_roi_method


@dataclass(frozen=True)
class PreprocessConfig:
    """Preprocessing knobs (``conf/preprocessing/*.yaml``).

    Args:
        image_size: side of the square network input in pixels.
        center_crop: fraction of the (resized) film kept by the center crop; 1.0 keeps everything.
        clahe: apply contrast-limited adaptive histogram equalisation.
        clip_limit: CLAHE clip limit.
        tile_grid_size: CLAHE tiles per side.
        roi: ``none`` or ``classical``: neutralise burned-in markers and borders and find the thorax mask that
            restricts the anomaly map (:mod:`cxrad.preprocessing.roi`).
        cache: keep each preprocessed film in ``cache_dir`` and reuse it while this config and the file are
            unchanged (:mod:`cxrad.preprocessing.cache`); changes no pixel.
        cache_dir: folder of the preprocessing cache; needed when ``cache`` is on.

    Example:
        >>> PreprocessConfig(image_size=224, center_crop=0.95).image_size
        224
    """

    image_size: int = 256
    center_crop: float = 1.0
    clahe: bool = True
    clip_limit: float = 2.0
    tile_grid_size: int = 8
    roi: str = "none"
    cache: bool = False
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.image_size < 32:
            msg = f"preprocessing.image_size={self.image_size} is too small; use at least 32 (e.g. 224 or 256)"
            raise ValueError(msg)
        if not 0.2 <= self.center_crop <= 1.0:
            msg = f"preprocessing.center_crop={self.center_crop} must be a fraction in [0.2, 1.0]"
            raise ValueError(msg)
        check_roi_method(self.roi)
        if self.cache and not self.cache_dir:
            msg = (
                f"preprocessing.cache=true needs a folder, got preprocessing.cache_dir={self.cache_dir!r}; "
                "set preprocessing.cache_dir=${paths.cache_dir}/preprocessed or preprocessing.cache=false"
            )
            raise ValueError(msg)


def read_grayscale(path: str | Path) -> np.ndarray:
    """Read a film as 8-bit grayscale: DICOM (see :mod:`cxrad.preprocessing.dicom`) or any image OpenCV reads.

    PNG modes: 8/16-bit, gray, gray+alpha, RGB, RGBA, palette (libpng expands it); alpha is ignored.

    Raises:
        DecodeError: (a ``ValueError``) when the file cannot be decoded.
    """
    if is_dicom(path):
        return read_dicom(path)
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        msg = f"cannot decode image {path}: the file is missing, empty, truncated, corrupt or not an image"
        raise DecodeError(msg)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        image = cv2.cvtColor(image, code)
    if image.dtype != np.uint8:
        # 16-bit films use only part of their range: stretch what is there rather than dividing by 257.
        image = cv2.normalize(image.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return image


def build_transform(config: PreprocessConfig) -> A.Compose:
    """Albumentations pipeline; masks follow the geometry (resize/crop) but not the intensity steps."""
    steps = _geometry(config, interpolation=cv2.INTER_AREA)
    if config.clahe:
        grid = (config.tile_grid_size, config.tile_grid_size)
        steps.append(A.CLAHE(clip_limit=(config.clip_limit, config.clip_limit), tile_grid_size=grid, p=1.0))
    steps.append(A.ToRGB(p=1.0))
    return A.Compose(steps)


def build_mask_geometry(config: PreprocessConfig) -> A.Compose:
    """The resize + crop of :func:`build_transform` alone, nearest-neighbour, for a mask passed as ``image``.

    A cached film skips :func:`build_transform`; its mask, drawn at the film's original size, goes through
    this to land on the same pixels as the mask of the uncached path.

    Example:
        >>> mask = np.zeros((512, 512), np.uint8)
        >>> build_mask_geometry(PreprocessConfig(image_size=64))(image=mask)["image"].shape
        (64, 64)
    """
    return A.Compose(_geometry(config, interpolation=cv2.INTER_NEAREST))


def _geometry(config: PreprocessConfig, interpolation: int) -> list[A.BasicTransform]:
    resize_to = int(round(config.image_size / config.center_crop))
    return [
        A.SmallestMaxSize(max_size=resize_to, interpolation=interpolation, mask_interpolation=cv2.INTER_NEAREST),
        A.CenterCrop(height=config.image_size, width=config.image_size),
    ]
