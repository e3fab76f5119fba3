"""Film-level Gaussian of pooled deep features, with a per-position Gaussian map for localisation.

The film score is the Mahalanobis distance of the film's pooled feature vector (mean- and max-pooled over the
positions of the backbone's deepest stage) to a Ledoit-Wolf Gaussian of the normal training films' vectors.
No patch is compared with any other patch: the score asks whether the film *as a whole* looks like normal
films, which on real NIH films ranked films inside a view better than PatchCore's patch distances.

A pooled vector has no position, so the anomaly map comes from the same feature map scored position by
position: each position of the deepest stage has its own Ledoit-Wolf Gaussian (chest films are roughly
aligned, as PaDiM assumes), the map holds each position's Mahalanobis distance, upsampled bilinearly to the
image. Both Gaussians are fitted on the same (optionally FiLM-conditioned) feature maps in one pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from anomalib.data import InferenceBatch
from torch import nn

from cxrad.model.components.feature_maps import FeatureMaps
from cxrad.model.components.ledoit_wolf import ShrunkGaussian, mahalanobis, precision
from cxrad.model.conditioning import apply_film


def pool_mean_max(maps: torch.Tensor) -> torch.Tensor:
    """``(B, 2C)``: each channel's mean over positions, then its maximum, of ``(B, C, h, w)`` maps."""
    flat = maps.flatten(2)
    return torch.cat([flat.mean(-1), flat.amax(-1)], dim=1)


def position_vectors(maps: torch.Tensor) -> torch.Tensor:
    """``(B, h * w, C)``: the feature vector of every position."""
    return maps.flatten(2).transpose(1, 2)


class GlobalGaussianModel(nn.Module):
    """Frozen backbone features scored by a film-level Gaussian (score) and per-position Gaussians (map).

    In training mode the forward pass returns the (FiLM-conditioned) feature maps and keeps them in
    ``memory_bank`` for the Lightning module to move into its statistics; in eval mode it returns anomalib's
    ``InferenceBatch`` with ``pred_score`` ``(B,)`` and ``anomaly_map`` ``(B, 1, H, W)``.

    Args:
        timm_name: timm architecture of the backbone.
        layers: its feature modules; several are average-pooled to the deepest one's grid and concatenated.

    Example:
        >>> model = GlobalGaussianModel("resnet18", ["layer4"])
        >>> maps = model.train()(torch.rand(4, 3, 64, 64))
        >>> maps.shape
        torch.Size([4, 512, 2, 2])
    """

    metadata: torch.Tensor | None = None  # set for one forward pass by cxrad.model.conditioning.metadata_of

    def __init__(self, timm_name: str, layers: list[str]) -> None:
        super().__init__()
        self.features = FeatureMaps(timm_name, layers, grid="coarsest")
        # Empty until fitted; checkpoint loading gives them the saved shapes (cxrad.model.checkpoint).
        for name in ("pooled_mean", "pooled_inv_covariance", "map_mean", "map_inv_covariance"):
            self.register_buffer(name, torch.empty(0))
        self.memory_bank: list[torch.Tensor] = []
        self.film: nn.Module | None = None  # a NormativeFiLM with metadata_conditioning=film

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """The deepest stage's features of ``images``, FiLM-conditioned when the model has a fitted FiLM."""
        return apply_film(self, self.features(images), "global_gaussian")

    def set_gaussians(self, pooled: ShrunkGaussian, positions: ShrunkGaussian) -> None:
        """Store the fitted film-level (one position) and per-position Gaussians as means and precisions."""
        device = self.pooled_mean.device
        self.pooled_mean = pooled.mean.float().to(device)
        self.pooled_inv_covariance = precision(pooled.covariance).to(device)
        self.map_mean = positions.mean.float().to(device)
        self.map_inv_covariance = precision(positions.covariance).to(device)

    def forward(self, images: torch.Tensor) -> torch.Tensor | InferenceBatch:
        maps = self.feature_map(images)
        if self.training:
            self.memory_bank.append(maps)
            return maps
        return self.score(maps, images.shape[-2:])

    def score(self, maps: torch.Tensor, image_size: torch.Size) -> InferenceBatch:
        """Film scores and anomaly maps (upsampled to ``image_size``) of ``(B, C, h, w)`` feature maps."""
        if self.pooled_mean.numel() == 0:
            msg = "global_gaussian is not fitted: train it (Engine.fit) or load a fitted checkpoint before scoring"
            raise RuntimeError(msg)
        pred_score = mahalanobis(pool_mean_max(maps).unsqueeze(1), self.pooled_mean, self.pooled_inv_covariance)
        local = mahalanobis(position_vectors(maps), self.map_mean, self.map_inv_covariance)
        local = local.reshape(len(maps), 1, *maps.shape[-2:])
        anomaly_map = F.interpolate(local, size=image_size, mode="bilinear", align_corners=False)
        return InferenceBatch(pred_score=pred_score.squeeze(1), anomaly_map=anomaly_map)
