"""The VAE: injected parts, no variants by subclassing."""
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.distributions import Distribution, Independent, kl_divergence

from vae_cli.errors import ConfigError
from vae_cli.models.conditioning import with_label


@dataclass
class LatentTerms:
    """What every objective needs from a model, for S posterior samples of a batch of B examples (nats)."""

    log_px: torch.Tensor  # (S, B) log p(x | z_s)
    log_pz: torch.Tensor  # (S, B) log p(z_s)
    log_qz: torch.Tensor  # (S, B) log q(z_s | x)
    kl_per_dim: torch.Tensor | None = None  # (B, D) closed-form KL(q || p) per latent dim, when it exists
    kl_per_layer: torch.Tensor | None = None  # (B, L) KL estimate per stochastic layer (hierarchical models)


def sample_with_log_prob(q: Distribution, num_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """S reparameterized draws (S, B, D) and their log q (S, B). Flows score their own samples (no inverse)
    through an `rsample_with_log_prob` hook; other distributions through log_prob."""
    if hasattr(q, "rsample_with_log_prob"):
        return q.rsample_with_log_prob((num_samples,))
    z = q.rsample((num_samples,))
    return z, q.log_prob(z)


def point_estimate(q: Distribution) -> torch.Tensor:
    """E_q[z] where it has a closed form; else one draw (flows: the pushed-forward base mean is not E_q[z])."""
    try:
        return q.mean
    except NotImplementedError:
        return q.sample()


def kl_per_dim(q: Distribution, p: Distribution) -> torch.Tensor | None:
    """Closed-form KL(q || p) per latent dim, (B, D), when both factorize over dims; else None."""
    if not (isinstance(q, Independent) and isinstance(p, Independent)):
        return None
    if q.reinterpreted_batch_ndims != 1 or p.reinterpreted_batch_ndims != 1:
        return None
    try:
        return kl_divergence(q.base_dist, p.base_dist)
    except NotImplementedError:
        return None


class VAE(nn.Module):
    """encoder: x -> features; posterior: features -> q(z|x); decoder: z -> params; likelihood: params -> p(x|z).

    condition (optional, model=cvae): labels y (B,) -> (B, E), appended to the encoder features and to z,
    giving q(z|x, y) and p(x|z, y); build.py widens the posterior head and the decoder input by E."""

    def __init__(self, encoder: nn.Module, posterior: nn.Module, decoder: nn.Module, likelihood: nn.Module,
                 prior: nn.Module, condition: nn.Module | None = None):
        super().__init__()
        if getattr(posterior, "needs_model", None):  # a categorical head or a quantizer: not for this class
            raise ConfigError(f"{type(posterior).__name__} (posterior) works with model={posterior.needs_model}")
        self.encoder, self.posterior, self.decoder = encoder, posterior, decoder
        self.likelihood, self.prior, self.condition = likelihood, prior, condition

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """(B, C, H, W) -> q(z|x), batch (B,), event (D,). Labels `y` are offered to every model; an
        unconditional one (condition=None) ignores them."""
        return self.posterior(with_label(self.encoder(x), y, self.condition))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """z (..., D) (labels y (B,) with z's last batch dim B) -> p(x|z) with batch shape (...), event (C, H, W)."""
        z = with_label(z, y, self.condition)  # (..., D + E)
        params = self.decoder(z.reshape(-1, z.shape[-1]))  # (N, P*C, H, W)
        return self.likelihood(params.view(*z.shape[:-1], *params.shape[1:]))

    def prior_dist(self) -> Distribution:
        return self.prior(encode=self.encode)  # priors built from the posterior (VampPrior) need the encoder

    def latent_terms(self, x: torch.Tensor, y: torch.Tensor | None = None, num_samples: int = 1) -> LatentTerms:
        """Draw S reparameterized z ~ q(z|x) and score them under the likelihood, prior and posterior."""
        q, p = self.encode(x, y), self.prior_dist()
        z, log_qz = sample_with_log_prob(q, num_samples)  # (S, B, D), (S, B)
        return LatentTerms(self.decode(z, y).log_prob(x), p.log_prob(z), log_qz, kl_per_dim(q, p))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """Reconstruction distribution p(x|z = E_q[z]) (for pictures; training goes through an objective)."""
        return self.decode(point_estimate(self.encode(x, y)), y)
