"""Film preprocessing: grayscale decode, resize + center crop, CLAHE, 3 channels (albumentations/OpenCV)."""

from cxrad.preprocessing.transforms import PreprocessConfig, build_transform, read_grayscale

__all__ = ["PreprocessConfig", "build_transform", "read_grayscale"]
