"""Mixture-of-Gaussians posterior q(z|x) = sum_c pi_c(x) N(z; mu_c(x), diag sigma_c(x)^2).

Sampling is reparameterized with implicit gradients (Graves 2016; Figurnov et al. 2018): draw a component
and a Gaussian sample, then give z_d the gradient of the conditional CDF F_d(z_d | z_<d) held fixed,
dz_d = -dF_d / q(z_d | z_<d). The sample is an exact draw from q, so the ELBO stays a bound; the gradient
reaches the mixture weights. The KL to the prior has no closed form: objectives use log q - log p.
"""
from typing import Annotated

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Categorical, Distribution, Normal, constraints

from vae_cli.checks import NONNEG, check_arguments
from vae_cli.errors import ConfigError
from vae_cli.models.base import PosteriorHead


class GaussianMixture(Distribution):
    """Batch (B,), event (D,), from logits (B, C), loc (B, C, D), scale (B, C, D)."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor):
        super().__init__(loc.shape[:-2], loc.shape[-1:], validate_args=False)
        self.log_pi = torch.log_softmax(logits, dim=-1)  # (B, C)
        self.loc, self.scale = loc, scale

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """z (..., B, D) -> log sum_c pi_c N(z; mu_c, sigma_c), (..., B) nats."""
        comp = Normal(self.loc, self.scale, validate_args=False).log_prob(z.unsqueeze(-2)).sum(-1)  # (..., B, C)
        return torch.logsumexp(self.log_pi + comp, dim=-1)

    @property
    def mean(self) -> torch.Tensor:
        return (self.log_pi.exp().unsqueeze(-1) * self.loc).sum(-2)  # (B, D)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self._draw(torch.Size(sample_shape))

    def _draw(self, sample_shape: torch.Size) -> torch.Tensor:
        c = Categorical(logits=self.log_pi, validate_args=False).sample(sample_shape)  # (S, B)
        idx = c[..., None, None].expand(*c.shape, 1, self.loc.shape[-1])  # (S, B, 1, D)
        loc = self.loc.expand(*sample_shape, *self.loc.shape).gather(-2, idx).squeeze(-2)
        scale = self.scale.expand(*sample_shape, *self.scale.shape).gather(-2, idx).squeeze(-2)
        return loc + scale * torch.randn_like(loc)  # (S, B, D)

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """An exact draw (S, B, D) whose value is `_draw`'s and whose gradient is the implicit one."""
        z_bar = self._draw(torch.Size(sample_shape)).detach()
        comp = Normal(self.loc, self.scale, validate_args=False)  # batch (B, C, D)
        log_w = self.log_pi.expand(*z_bar.shape[:-1], -1)  # (S, B, C): log pi_c + sum_{j<d} log N(z_j)
        dims = []
        for d in range(z_bar.shape[-1]):
            comp_d = Normal(comp.loc[..., d], comp.scale[..., d], validate_args=False)  # batch (B, C)
            zd = z_bar[..., d:d + 1]  # (S, B, 1)
            w = torch.softmax(log_w, dim=-1)
            cdf = (w * comp_d.cdf(zd)).sum(-1)  # (S, B) conditional CDF of z_d given z_<d
            pdf = torch.logsumexp(torch.log_softmax(log_w, -1) + comp_d.log_prob(zd), -1).exp()
            dims.append(zd.squeeze(-1) - (cdf - cdf.detach()) / pdf.detach().clamp_min(1e-12))
            log_w = log_w + comp_d.log_prob(dims[-1].unsqueeze(-1))
        return torch.stack(dims, dim=-1)


class MixturePosterior(PosteriorHead):
    """Encoder features (B, F) -> a C-component diagonal Gaussian mixture over (latent_dim,)."""

    def __init__(self, in_features: int, latent_dim: int, num_components: int = 4,
                 min_scale: Annotated[float, NONNEG] = 1e-5):
        super().__init__()
        check_arguments("posterior", MixturePosterior, locals())
        if num_components < 1:
            raise ConfigError(f"posterior.num_components={num_components} must be >= 1")
        self.head = nn.Linear(in_features, num_components * (2 * latent_dim + 1))
        self.c, self.d, self.min_scale = num_components, latent_dim, min_scale
        self.out_features = latent_dim

    def forward(self, h: torch.Tensor) -> Distribution:
        out = self.head(h).float()
        logits, rest = out[:, :self.c], out[:, self.c:].view(len(h), self.c, 2 * self.d)
        loc, raw_scale = rest.chunk(2, dim=-1)  # (B, C, D) each
        return GaussianMixture(logits, loc, F.softplus(raw_scale) + self.min_scale)
