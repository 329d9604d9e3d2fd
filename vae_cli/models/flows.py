"""Normalizing-flow posteriors: a diagonal Gaussian pushed through L invertible layers.

log q(z_L|x) = log N(z_0; mu, sigma) - sum_l log |det dz_l/dz_{l-1}|, known at the posterior's own samples
(the flows are never inverted). Planar flows: Rezende & Mohamed 2015; IAF: Kingma et al. 2016.
"""
from typing import Annotated, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Distribution, Independent, constraints

from vae_cli.checks import NONNEG, check_arguments
from vae_cli.errors import ConfigError
from vae_cli.models.base import PosteriorHead
from vae_cli.models.posteriors import DiagonalGaussian

Transform = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # z0 (S, B, D) -> z (S, B, D), log|det| (S, B)


class FlowSample(Distribution):
    """A base distribution pushed through `transform`. log_prob is available for the values rsample returned
    (cached by identity); any other value would need the inverse flow and raises NotImplementedError.
    `mean` raises NotImplementedError too: E_q[z] has no closed form (so active units do not apply)."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, base: Independent, transform: Transform):
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)
        self.base, self.transform = base, transform
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def rsample_with_log_prob(self, sample_shape=torch.Size()) -> tuple[torch.Tensor, torch.Tensor]:
        z0 = self.base.rsample(sample_shape)  # (S, B, D)
        z, log_det = self.transform(z0)
        log_q = self.base.log_prob(z0) - log_det  # (S, B) nats
        self._cache = (z, log_q)
        return z, log_q

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        return self.rsample_with_log_prob(sample_shape)[0]

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._cache is not None and value is self._cache[0]:
            return self._cache[1]
        raise NotImplementedError("a flow posterior's log q(z|x) is known only at its own samples (no inverse)")


def planar(z: torch.Tensor, u: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z + u_hat tanh(w.z + b); u_hat makes w.u_hat > -1 (invertible). z (S, B, D); u, w (B, D); b (B, 1)."""
    wu = (w * u).sum(-1, keepdim=True)
    u_hat = u + (F.softplus(wu) - 1.0 - wu) * w / (w * w).sum(-1, keepdim=True).clamp_min(1e-8)
    h = torch.tanh((z * w).sum(-1, keepdim=True) + b)  # (S, B, 1)
    log_det = torch.log1p(((1.0 - h**2) * (w * u_hat).sum(-1, keepdim=True)).squeeze(-1))  # (S, B)
    return z + u_hat * h, log_det


class PlanarFlowPosterior(PosteriorHead):
    """Diagonal Gaussian + `num_layers` planar flows whose u, w, b are functions of x (amortized)."""

    density_anywhere = has_mean = False  # log q only at its own samples; E_q[z] has no closed form

    def __init__(self, in_features: int, latent_dim: int, num_layers: int = 4,
                 min_scale: Annotated[float, NONNEG] = 1e-5):
        super().__init__()
        check_arguments("posterior", PlanarFlowPosterior, locals())
        if num_layers < 1:
            raise ConfigError(f"posterior.num_layers={num_layers} must be >= 1")
        self.base = DiagonalGaussian(in_features, latent_dim, min_scale)
        self.flow_params = nn.Linear(in_features, num_layers * (2 * latent_dim + 1))
        self.num_layers, self.latent_dim, self.out_features = num_layers, latent_dim, latent_dim

    def forward(self, h: torch.Tensor) -> Distribution:
        d = self.latent_dim
        params = self.flow_params(h).float().view(len(h), self.num_layers, 2 * d + 1)  # (B, L, 2D+1)

        def transform(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            log_det = torch.zeros(z.shape[:-1], device=z.device)
            for layer in params.unbind(1):  # (B, 2D+1)
                z, ld = planar(z, layer[:, :d], layer[:, d:2 * d], layer[:, 2 * d:])
                log_det = log_det + ld
            return z, log_det

        return FlowSample(self.base(h), transform)


class MaskedLinear(nn.Linear):
    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor):
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.float())  # (out, in) of 0/1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """z (..., D) and context (..., C) -> (m, s) (..., D) each, output d depending only on inputs before d
    in `order` (Germain et al. 2015). Two masked hidden layers of width `hidden`; the context enters unmasked."""

    def __init__(self, latent_dim: int, context: int, hidden: int, order: torch.Tensor):
        super().__init__()
        deg_in = order + 1  # (D,) degrees 1..D
        deg_h = torch.arange(hidden) % max(latent_dim - 1, 1) + 1  # (H,)
        deg_out = deg_in.repeat(2)  # (2D,): m then s
        self.inp = MaskedLinear(latent_dim, hidden, deg_h[:, None] >= deg_in[None, :])
        self.ctx = nn.Linear(context, hidden)
        self.mid = MaskedLinear(hidden, hidden, deg_h[:, None] >= deg_h[None, :])
        self.out = MaskedLinear(hidden, 2 * latent_dim, deg_out[:, None] > deg_h[None, :])

    def forward(self, z: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.elu(self.inp(z) + self.ctx(context))
        return self.out(F.elu(self.mid(h))).chunk(2, dim=-1)


class IAFPosterior(PosteriorHead):
    """Diagonal Gaussian + `num_layers` inverse autoregressive flow steps (Kingma et al. 2016, the LSTM-style
    update z <- sigma * z + (1 - sigma) * m, sigma = sigmoid(s + forget_bias)); orderings alternate per layer.
    The encoder features are the context h of every step."""

    density_anywhere = has_mean = False

    def __init__(self, in_features: int, latent_dim: int, num_layers: int = 2, hidden: int = 128,
                 forget_bias: float = 1.0, min_scale: Annotated[float, NONNEG] = 1e-5):
        super().__init__()
        if num_layers < 1 or hidden < 1:
            raise ConfigError(f"posterior.num_layers={num_layers} and posterior.hidden={hidden} must be >= 1")
        self.base = DiagonalGaussian(in_features, latent_dim, min_scale)
        orders = [torch.arange(latent_dim) if i % 2 == 0 else torch.arange(latent_dim).flip(0)
                  for i in range(num_layers)]
        self.steps = nn.ModuleList(MADE(latent_dim, in_features, hidden, o) for o in orders)
        self.forget_bias, self.out_features = forget_bias, latent_dim

    def forward(self, h: torch.Tensor) -> Distribution:
        context = h.float()  # (B, F), broadcast over the sample dim

        def transform(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            log_det = torch.zeros(z.shape[:-1], device=z.device)
            for made in self.steps:
                m, s = made(z, context)
                gate = torch.sigmoid(s + self.forget_bias)  # (S, B, D) in (0, 1)
                z = gate * z + (1.0 - gate) * m
                log_det = log_det + F.logsigmoid(s + self.forget_bias).sum(-1)
            return z, log_det

        return FlowSample(self.base(h), transform)
