"""Priors p(z): modules whose forward() returns a torch distribution with event shape (latent_dim,)."""
import torch
import torch.nn as nn
from torch.distributions import Distribution, Independent, Normal


class StandardNormal(nn.Module):
    def __init__(self, latent_dim: int):
        super().__init__()
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def forward(self) -> Distribution:
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1, validate_args=False)
