"""Posterior heads q(z|x): encoder features (B, F) -> a torch distribution with event shape (latent_dim,)."""
from typing import Annotated

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Distribution, Independent, Normal

from vae_cli.checks import NONNEG, check_arguments
from vae_cli.models.base import PosteriorHead


class DiagonalGaussian(PosteriorHead):
    """q(z|x) = N(mu(x), diag(sigma(x)^2)); sigma = softplus(.) + min_scale keeps it positive and smooth."""

    def __init__(self, in_features: int, latent_dim: int, min_scale: Annotated[float, NONNEG] = 1e-5):
        super().__init__()
        check_arguments("posterior", DiagonalGaussian, locals())
        self.head = nn.Linear(in_features, 2 * latent_dim)
        self.min_scale, self.out_features = min_scale, latent_dim

    def forward(self, h: torch.Tensor) -> Distribution:
        loc, raw_scale = self.head(h).float().chunk(2, dim=-1)  # (B, D) each
        return Independent(Normal(loc, F.softplus(raw_scale) + self.min_scale, validate_args=False), 1,
                           validate_args=False)
