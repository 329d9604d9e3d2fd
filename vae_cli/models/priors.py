"""Continuous priors p(z): `prior(encode)` returns a torch distribution with event shape (latent_dim,)."""
import math
from typing import Annotated

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal

from vae_cli.checks import NONNEG, check_arguments
from vae_cli.errors import ConfigError
from vae_cli.models.base import Encode, Prior


class StandardNormal(Prior):
    def __init__(self, latent_dim: int):
        super().__init__()
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def forward(self, encode: Encode | None = None) -> Distribution:
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1, validate_args=False)


class MixturePrior(Prior):
    """p(z) = sum_k pi_k N(z; mu_k, diag sigma_k^2) with learned weights, means and scales."""

    def __init__(self, latent_dim: int, num_components: int = 10, init_spread: float = 1.0,
                 min_scale: Annotated[float, NONNEG] = 1e-3):
        super().__init__()
        check_arguments("prior", MixturePrior, locals())
        if num_components < 1:
            raise ConfigError(f"prior.num_components={num_components} must be >= 1")
        self.logits = nn.Parameter(torch.zeros(num_components))
        self.loc = nn.Parameter(init_spread * torch.randn(num_components, latent_dim))  # (K, D)
        self.raw_scale = nn.Parameter(torch.full((num_components, latent_dim), math.log(math.expm1(1.0))))
        self.min_scale = min_scale

    def forward(self, encode: Encode | None = None) -> Distribution:
        scale = F.softplus(self.raw_scale) + self.min_scale
        components = Independent(Normal(self.loc, scale, validate_args=False), 1, validate_args=False)  # batch (K,)
        return MixtureSameFamily(Categorical(logits=self.logits, validate_args=False), components, validate_args=False)


class VampPrior(Prior):
    """p(z) = (1/K) sum_k q(z | u_k) with K learned pseudo-inputs u_k in data space (Tomczak & Welling 2018).

    `encode` (the model's encoder + posterior head) is passed in at every call, so the prior follows it.
    Pseudo-inputs are sigmoid(raw) in [0, 1], the range of the prepared images."""

    needs_posterior_density = True  # log p(z) evaluates q(z | u_k) at arbitrary z
    fill = ("image_shape",)

    def __init__(self, image_shape: tuple[int, int, int], num_pseudo: int = 500, init_std: float = 0.1):
        super().__init__()
        if num_pseudo < 1:
            raise ConfigError(f"prior.num_pseudo={num_pseudo} must be >= 1")
        self.raw = nn.Parameter(init_std * torch.randn(num_pseudo, *image_shape))  # (K, C, H, W)

    def pseudo_inputs(self) -> torch.Tensor:
        return torch.sigmoid(self.raw)

    def forward(self, encode: Encode | None = None) -> Distribution:
        if encode is None:
            raise ConfigError("prior=vamp needs the model's encoder; use it inside a VAE")
        components = encode(self.pseudo_inputs())  # q(z | u_k), batch (K,), event (D,)
        uniform = Categorical(logits=torch.zeros(len(self.raw), device=self.raw.device), validate_args=False)
        return MixtureSameFamily(uniform, components, validate_args=False)
