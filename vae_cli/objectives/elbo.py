"""The ELBO: loss = -E_q[log p(x|z)] + beta_t * R, with presets in configs/objective.

Every term is per example, in nats, except `kl_per_dim` (batch mean, shape (D,)).
R is the KL, or with free bits lambda, sum_j max(lambda, KL_j averaged over the batch) (Kingma et al. 2016).
beta_t = beta * schedule(step) is the injected `Weight` (objectives/base.py).
"""
import math
from typing import Annotated

import torch

from vae_cli.checks import NONNEG, check_arguments
from vae_cli.errors import ConfigError
from vae_cli.objectives.base import Objective
from vae_cli.schedules import Weight


def log_weights(t) -> torch.Tensor:
    """log p(x, z_s) - log q(z_s | x), (S, B): the importance weights of IWAE and of the IW-NLL estimate."""
    return t.log_px + t.log_pz - t.log_qz


def layer_terms(t) -> dict[str, torch.Tensor]:
    """KL per stochastic layer, batch mean (L,), for hierarchical models; nothing for one-layer ones."""
    return {} if t.kl_per_layer is None else {"kl_per_layer": t.kl_per_layer.mean(0)}


def elbo_parts(t):
    """(distortion (B,), rate (B,), kl_per_dim (B, D) or None) from S samples: the closed-form KL when
    it exists, else the Monte Carlo estimate mean_s [log q(z_s|x) - log p(z_s)]."""
    kl_dims = t.kl_per_dim
    rate = kl_dims.sum(-1) if kl_dims is not None else (t.log_qz - t.log_pz).mean(0)
    return -t.log_px.mean(0), rate, kl_dims


def bits_per_dim(nats: torch.Tensor, num_dims: int, discrete_offset: float) -> torch.Tensor:
    """Negative log-likelihood per example in nats -> bits per data dimension on the 8-bit scale."""
    return (nats / num_dims + discrete_offset) / math.log(2.0)


def free_bits_rate(kl_dims: torch.Tensor, free_bits: float) -> torch.Tensor:
    """Per-example R whose batch mean is sum_j max(lambda, mean_b KL_bj), with that gradient.

    kl_dims (B, D) -> (B,). Dims whose batch-mean KL is under lambda contribute the constant lambda.
    """
    above = kl_dims.mean(0) > free_bits  # (D,)
    return torch.where(above, kl_dims, torch.full_like(kl_dims, free_bits)).sum(-1)


def elbo_terms(t, loss, x, likelihood) -> dict[str, torch.Tensor]:
    """The named terms every ELBO-family objective logs beside its `loss`: elbo, distortion, rate, bits/dim."""
    distortion, rate, kl_dims = elbo_parts(t)
    elbo = -(distortion + rate)
    out = {"loss": loss, "elbo": elbo, "distortion": distortion, "rate": rate,
           "bits_per_dim": bits_per_dim(-elbo, x[0].numel(), likelihood.discrete_offset)}
    if kl_dims is not None:
        out["kl_per_dim"] = kl_dims.mean(0)
    return out | layer_terms(t)


class ELBO(Objective):
    """ELBO with the weight beta_t and free bits; `num_samples` reparameterized samples per example."""

    def __init__(self, weight: Weight | None = None, free_bits: Annotated[float, NONNEG] = 0.0, num_samples: int = 1):
        check_arguments("objective", ELBO, locals())
        super().__init__(weight or Weight(), num_samples)
        self.free_bits = float(free_bits)

    def loss(self, t, knobs: dict, x: torch.Tensor, model) -> dict[str, torch.Tensor]:
        distortion, rate, kl_dims = elbo_parts(t)
        loss = distortion + knobs["beta"] * self._regularizer(rate, kl_dims)
        return elbo_terms(t, loss, x, model.likelihood)

    def _regularizer(self, rate: torch.Tensor, kl_dims: torch.Tensor | None) -> torch.Tensor:
        if self.free_bits == 0.0:
            return rate
        if kl_dims is None:
            raise ConfigError("objective.free_bits needs a posterior and prior whose KL factorizes over latent dims")
        return free_bits_rate(kl_dims, self.free_bits)
