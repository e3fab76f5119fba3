"""Feature autoencoder (Meissen et al.): reconstruct a frozen backbone's multi-scale feature maps.

The backbone's feature maps at a few depths are resized to the shallowest one's grid and concatenated; a small
convolutional encoder-decoder with a narrow bottleneck is trained with the mean squared error to reconstruct
them from normal films only. Structures it never saw (a lesion) are reconstructed badly, so the anomaly map is
each position's reconstruction error (mean over channels) and the film score its maximum or mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from anomalib.data import InferenceBatch
from torch import nn

from cxrad.model.components.feature_maps import FeatureMaps
from cxrad.model.conditioning import apply_film

SCORES = ("max", "mean")


def _down(channels_in: int, channels_out: int) -> nn.Conv2d:
    # Kernel 4, stride 2, padding 1 halves an even grid with windows placed symmetrically (a 3x3 stride-2 conv
    # sees the last row and column only at its window's edge, and the error map then peaks in that corner);
    # replicated borders for the same reason: zero padding makes border positions harder to reconstruct.
    return nn.Conv2d(channels_in, channels_out, 4, stride=2, padding=1, padding_mode="replicate", bias=False)


def _block(conv: nn.Module, channels: int) -> nn.Sequential:
    return nn.Sequential(conv, nn.BatchNorm2d(channels), nn.LeakyReLU(0.2))


class ConvAutoencoder(nn.Module):
    """Convolutional encoder-decoder on ``(B, C, h, w)`` maps; each hidden level halves the grid.

    Args:
        channels: input (and output) channels.
        hidden: widths of the encoder's levels (the decoder mirrors them).
        bottleneck: channels of the code between encoder and decoder (the narrow part).

    Example:
        >>> ae = ConvAutoencoder(channels=8, hidden=[16, 32], bottleneck=4)
        >>> ae(torch.rand(2, 8, 12, 12)).shape
        torch.Size([2, 8, 12, 12])
    """

    def __init__(self, channels: int, hidden: Sequence[int], bottleneck: int) -> None:
        super().__init__()
        widths = [channels, *hidden]
        self.encoder = nn.Sequential(
            *[_block(_down(a, b), b) for a, b in pairwise(widths)],
            nn.Conv2d(widths[-1], bottleneck, 1),
        )
        back = [bottleneck, *reversed(hidden)]
        self.decoder = nn.Sequential(
            *[_block(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1, bias=False), b) for a, b in pairwise(back)],
            nn.Conv2d(back[-1], channels, 1),
        )
        self.film: nn.Module | None = None  # an MLPFiLM on the code with metadata_conditioning=film
        self.metadata: torch.Tensor | None = None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        code = apply_film(self, self.encoder(features), "feature_ae")
        decoded = self.decoder(code)
        if decoded.shape[-2:] != features.shape[-2:]:  # grids not divisible by 2 ** len(hidden)
            decoded = F.interpolate(decoded, size=features.shape[-2:], mode="bilinear", align_corners=False)
        return decoded


def reconstruction_error(features: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """``(B, 1, h, w)``: each position's squared error, averaged over channels."""
    return (features - reconstruction).square().mean(1, keepdim=True)


class FeatureAEModel(nn.Module):
    """Frozen backbone features and the autoencoder reconstructing them.

    In training mode the forward pass returns ``(features, reconstruction)``; in eval mode anomalib's
    ``InferenceBatch``: ``anomaly_map`` ``(B, 1, H, W)`` is the error map upsampled bilinearly to the image,
    ``pred_score`` the maximum or mean (``score``) of the error map on the feature grid.

    Args:
        timm_name: timm architecture of the backbone.
        layers: its feature modules, resized to the shallowest one's grid and concatenated.
        hidden: autoencoder level widths.
        bottleneck: autoencoder code channels.
        score: ``'max'`` or ``'mean'`` of the error map.
    """

    metadata: torch.Tensor | None = None  # set for one forward pass by cxrad.model.conditioning.metadata_of

    def __init__(
        self, timm_name: str, layers: list[str], hidden: Sequence[int], bottleneck: int, score: str = "mean"
    ) -> None:
        super().__init__()
        if score not in SCORES:
            msg = f"feature_ae score={score!r} is unknown; use one of {SCORES}"
            raise ValueError(msg)
        self.score = score
        self.features = FeatureMaps(timm_name, layers, grid="finest")
        self.autoencoder = ConvAutoencoder(self.features.channels, hidden, bottleneck)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | InferenceBatch:
        features = self.features(images)
        self.autoencoder.metadata = self.metadata
        try:
            reconstruction = self.autoencoder(features)
        finally:
            self.autoencoder.metadata = None
        if self.training:
            return features, reconstruction
        error = reconstruction_error(features, reconstruction)
        pred_score = error.amax((-2, -1)) if self.score == "max" else error.mean((-2, -1))
        anomaly_map = F.interpolate(error, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return InferenceBatch(pred_score=pred_score.reshape(-1), anomaly_map=anomaly_map)
