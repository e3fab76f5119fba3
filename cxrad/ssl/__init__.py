"""Self-supervised pretraining of a backbone on normal chest films (``python -m cxrad.pretrain``)."""

from cxrad.ssl.augment import ChestAugmentConfig, build_chest_augment
from cxrad.ssl.data import TwoViewFilms, two_view_loader
from cxrad.ssl.simclr import SimCLR

__all__ = ["ChestAugmentConfig", "SimCLR", "TwoViewFilms", "build_chest_augment", "two_view_loader"]
