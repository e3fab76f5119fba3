"""A frozen timm backbone's feature maps, resized to one grid and concatenated."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from anomalib.models.components import TimmFeatureExtractor
from torch import nn

from cxrad.backbone import validate_layers


class FeatureMaps(nn.Module):
    """Frozen backbone features of ``layers``, each resized to one layer's grid, concatenated on channels.

    Args:
        timm_name: timm architecture (weights are loaded afterwards by :func:`cxrad.backbone.load_pretrained`
            into ``self.extractor.feature_extractor``).
        layers: feature modules to use; validated (timm would silently drop unknown names).
        grid: ``'finest'`` resizes every map to the shallowest layer's grid (bilinear), ``'coarsest'`` to the
            deepest's (adaptive average pooling, so a finer map's detail is averaged, not subsampled).
    """

    def __init__(self, timm_name: str, layers: Sequence[str], grid: str = "finest") -> None:
        super().__init__()
        if grid not in ("finest", "coarsest"):
            msg = f"grid={grid!r} is unknown; use 'finest' or 'coarsest'"
            raise ValueError(msg)
        validate_layers(timm_name, list(layers))
        self.layers, self.grid = list(layers), grid
        self.extractor = TimmFeatureExtractor(backbone=timm_name, layers=self.layers, pre_trained=False)

    @property
    def channels(self) -> int:
        """Channels of the concatenated map."""
        return sum(self.extractor.out_dims)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, channels, h, w)`` features of ``(B, 3, H, W)`` images (no gradient into the backbone)."""
        features = self.extractor(images)
        maps = [features[layer] for layer in self.layers]
        areas = [m.shape[-2] * m.shape[-1] for m in maps]
        pick = max if self.grid == "finest" else min
        size = maps[areas.index(pick(areas))].shape[-2:]
        return torch.cat([self._resize(m, size) for m in maps], dim=1)

    def _resize(self, features: torch.Tensor, size: torch.Size) -> torch.Tensor:
        if features.shape[-2:] == size:
            return features
        if self.grid == "finest":
            return F.interpolate(features, size=size, mode="bilinear", align_corners=False)
        return F.adaptive_avg_pool2d(features, size)
