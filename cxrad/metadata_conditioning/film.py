"""FiLM (feature-wise linear modulation) of backbone features by patient metadata.

``x' = gamma(m) * x + beta(m)``, with ``gamma``/``beta`` per channel (and optionally per position) produced
from the encoded metadata ``m``. Written here because neither anomalib nor timm has a metadata-conditioned
feature layer. Two ways to get the parameters:

- :class:`NormativeFiLM` (PatchCore, PaDiM: no gradient training) is fitted in closed form on normal training
  features: ridge regressions of each feature's mean and second moment on the metadata give the normal
  conditional mean ``mu(m)`` and std ``sigma(m)``; FiLM then maps every film's features onto the population:
  ``x' = mu_bar + (sigma_bar / sigma(m)) * (x - mu(m))``, i.e. ``gamma = sigma_bar / sigma(m)`` and
  ``beta = mu_bar - gamma * mu(m)``. What metadata explains in *normal* films (AP magnification, age, sex) is
  removed; what it does not explain (a lesion) is kept, in the same units as before.
- :class:`MLPFiLM` (FastFlow, DRAEM: trained end to end) is a small MLP initialised to the identity.
"""

from __future__ import annotations

import torch
from torch import nn


class FiLM(nn.Module):
    """Base class: ``forward(x, metadata)`` modulates ``x`` of shape ``(B, C, H, W)``.

    ``columns`` (default all) are the metadata columns it reads: the configured covariates'
    (:func:`cxrad.data.metadata.covariate_columns`); batches always carry the whole encoding.
    """

    columns: list[int] | None = None

    def select(self, metadata: torch.Tensor) -> torch.Tensor:
        """The columns of ``metadata`` this FiLM conditions on."""
        return metadata if self.columns is None else metadata[:, self.columns]

    def parameters_for(self, metadata: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(gamma, beta)`` broadcastable to ``(B, C, H, W)``."""
        raise NotImplementedError

    def forward(self, features: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.parameters_for(self.select(metadata).to(features.dtype))
        return gamma * features + beta


class NormativeFiLM(FiLM):
    """FiLM whose parameters are the normal conditional standardisation of the features.

    Args:
        metadata_dim: length of the metadata encoding.
        prior_count: ridge strength in pseudo-films: groups (e.g. AP women over 60) with few normal films
            are shrunk toward the population instead of fitting noise.
        min_std_ratio: floor of ``sigma(m)`` as a fraction of ``sigma_bar`` (keeps ``gamma`` bounded).
        scale: also equalise the spread (``gamma != 1``); False shifts means only.
        per_position: parameters per channel and position (else per channel, pooled over positions).
        columns: the metadata columns read (default all; ``metadata_dim`` is their number).

    Example:
        >>> film = NormativeFiLM(metadata_dim=1, per_position=True)
        >>> x = torch.tensor([[[[0.0]]], [[[2.0]]]])  # two films, one feature
        >>> m = torch.tensor([[0.0], [1.0]])         # the metadata explains the whole difference
        >>> film.fit(x, m, prior_count=0.0)
        >>> film(x, m).flatten().tolist()
        [1.0, 1.0]
    """

    BUFFERS = ("metadata_mean", "mean_bar", "var_bar", "coef_mean", "coef_var", "feature_shape")

    def __init__(
        self,
        metadata_dim: int,
        prior_count: float = 5.0,
        min_std_ratio: float = 0.2,
        scale: bool = True,
        per_position: bool = False,
        columns: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.columns = columns
        self.per_position = per_position
        self.metadata_dim = metadata_dim
        self.prior_count = prior_count
        self.min_std_ratio = min_std_ratio
        self.scale = scale
        for name in self.BUFFERS:  # empty until fitted; saved with checkpoints
            self.register_buffer(name, torch.empty(0))

    @property
    def is_fitted(self) -> bool:
        return self.mean_bar.numel() > 0

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object, **kwargs: object) -> None:
        # Buffers are empty before fitting: take the checkpoint's shapes so a fitted FiLM loads into a new one.
        for name in self.BUFFERS:
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def fit(self, features: torch.Tensor, metadata: torch.Tensor, prior_count: float | None = None) -> None:
        """Fit on normal films' features ``(N, C, H, W)`` (or ``(N, C)``) and metadata ``(N, D)``.

        Two ridge regressions on the centred metadata: first the feature means, then the squared residuals
        around them (regressing raw second moments instead would subtract two shrunk estimates of large,
        nearly equal numbers). Per position (``per_position=True``) every (channel, position) gets its own
        moments; otherwise moments are pooled over positions and the FiLM is per channel.
        """
        prior = self.prior_count if prior_count is None else prior_count
        metadata = self.select(metadata)
        pooled = not self.per_position and features.dim() == 4
        x = features.double()
        m = metadata.double().to(x.device)
        centred = m - m.mean(0)
        gram = centred.T @ centred + prior * torch.eye(m.shape[1], dtype=m.dtype, device=m.device)
        solve = torch.linalg.pinv(gram) @ centred.T  # (D, N): shared by every feature's regression
        first = x.mean((2, 3)) if pooled else x.flatten(1)
        mean_bar = first.mean(0)
        coef_mean = solve @ (first - mean_bar)
        conditional_mean = (mean_bar + centred @ coef_mean).reshape(-1, *(x.shape[1:2] if pooled else x.shape[1:]))
        if pooled:
            conditional_mean = conditional_mean[..., None, None]
        squared = (x - conditional_mean).square()
        # The spread is always per channel, pooled over positions: per-position variance regressions from a
        # few hundred films are too noisy to divide by.
        residual = squared.mean((2, 3)) if x.dim() == 4 else squared
        var_bar = residual.mean(0)
        fitted = {
            "metadata_mean": m.mean(0),
            "mean_bar": mean_bar,
            "var_bar": var_bar,  # target spread: residual variance pooled over all training films
            "coef_mean": coef_mean,
            "coef_var": solve @ (residual - var_bar),
        }
        for name, value in fitted.items():
            setattr(self, name, value.float())
        shape = (features.shape[1], 1, 1) if pooled else features.shape[1:]
        self.feature_shape = torch.tensor(shape, device=features.device)

    def conditional_moments(self, metadata: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normal mean ``(B, P)`` of every feature and std ``(B, C)`` of every channel given ``metadata``."""
        centred = metadata - self.metadata_mean
        mean = self.mean_bar + centred @ self.coef_mean
        variance = self.var_bar + centred @ self.coef_var
        floor = ((self.min_std_ratio**2) * self.var_bar).clamp_min(1e-12)
        return mean, torch.maximum(variance, floor).sqrt()

    def parameters_for(self, metadata: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_fitted:  # identity until fitted: the training pass collects raw features
            return torch.ones((), device=metadata.device), torch.zeros((), device=metadata.device)
        mean, std = self.conditional_moments(metadata.to(self.mean_bar.dtype))
        gamma = self.var_bar.sqrt() / std if self.scale else torch.ones_like(std)
        shape = (metadata.shape[0], *self.feature_shape.tolist())
        gamma = gamma.reshape(metadata.shape[0], -1, *[1] * (len(shape) - 2))  # per channel
        mean = mean.reshape(shape)
        beta = self.mean_bar.reshape(shape[1:]) - gamma * mean
        return gamma, beta


class MLPFiLM(FiLM):
    """FiLM from a small MLP, trained end to end with the detector; starts as the identity.

    Args:
        metadata_dim: length of the metadata encoding.
        channels: feature channels modulated.
        hidden: MLP width.
        columns: the metadata columns read (default all; ``metadata_dim`` is their number).
    """

    def __init__(self, metadata_dim: int, channels: int, hidden: int = 64, columns: list[int] | None = None) -> None:
        super().__init__()
        self.columns = columns
        self.channels = channels
        self.net = nn.Sequential(nn.Linear(metadata_dim, hidden), nn.SiLU(), nn.Linear(hidden, 2 * channels))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def parameters_for(self, metadata: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        delta_gamma, beta = self.net(metadata).chunk(2, dim=1)
        return (1.0 + delta_gamma)[..., None, None], beta[..., None, None]
