"""Film preprocessing: grayscale decode (PNG/JPEG/DICOM), resize + center crop, CLAHE, 3 channels."""

from cxrad.preprocessing.dicom import DecodeError, is_dicom
from cxrad.preprocessing.transforms import PreprocessConfig, build_transform, read_grayscale

__all__ = ["DecodeError", "PreprocessConfig", "build_transform", "is_dicom", "read_grayscale"]
