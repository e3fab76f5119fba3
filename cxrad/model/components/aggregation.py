"""Local neighbourhood aggregation of backbone feature maps, with configurable patch size and stride.

anomalib hard-codes PatchCore's aggregation as a 3x3, stride-1 average pool and PaDiM has none; the study
varies both, so every feature map passes through this wrapper instead.
"""

from __future__ import annotations

import torch
from torch import nn


class LocalAggregation(nn.Module):
    """Wrap a feature extractor returning ``{layer: (B, C, H, W)}`` and average-pool each map.

    Args:
        extractor: module returning a dict of feature maps.
        patch_size: side of the neighbourhood averaged around each position (1 = no aggregation).
        stride: step between output positions (1 keeps the map's resolution).

    Example:
        >>> agg = LocalAggregation(nn.Identity(), patch_size=3, stride=2)
        >>> agg.pool(torch.ones(1, 4, 8, 8)).shape
        torch.Size([1, 4, 4, 4])
    """

    def __init__(self, extractor: nn.Module, patch_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        if patch_size < 1 or stride < 1:
            msg = f"model.patch_size={patch_size} and model.patch_stride={stride} must both be >= 1"
            raise ValueError(msg)
        self.extractor = extractor
        # Zero padding counted in the average, as anomalib's pooler: border patches are damped alike in every film,
        # so film borders (collimation, noise) weigh less in the nearest-neighbour distances.
        self.pool = nn.AvgPool2d(patch_size, stride, patch_size // 2, count_include_pad=True)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {layer: self.pool(feature) for layer, feature in self.extractor(images).items()}
