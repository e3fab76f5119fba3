"""Film preprocessing: grayscale decode (PNG/JPEG/DICOM), resize + center crop, CLAHE, 3 channels; its cache."""

from cxrad.preprocessing.cache import CachedFilm, PreprocessCache
from cxrad.preprocessing.dicom import DecodeError, is_dicom
from cxrad.preprocessing.transforms import PreprocessConfig, build_mask_geometry, build_transform, read_grayscale

__all__ = [
    "CachedFilm",
    "DecodeError",
    "PreprocessCache",
    "PreprocessConfig",
    "build_mask_geometry",
    "build_transform",
    "is_dicom",
    "read_grayscale",
]
