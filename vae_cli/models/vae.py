"""The VAE: injected parts, no variants by subclassing."""
import torch
import torch.nn as nn
from torch.distributions import Distribution, Independent, kl_divergence

from vae_cli.models.base import DensityFamily, LatentKind, LatentTerms
from vae_cli.models.conditioning import with_label

__all__ = ["VAE", "LatentTerms", "sample_with_log_prob", "kl_per_dim"]


def sample_with_log_prob(q: Distribution, num_samples: int, density_anywhere: bool = True
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """S reparameterized draws (S, B, D) and their log q (S, B). Heads that declare no density anywhere (flows)
    score their own samples (no inverse) through `rsample_with_log_prob`; others through log_prob."""
    if not density_anywhere:
        return q.rsample_with_log_prob((num_samples,))
    z = q.rsample((num_samples,))
    return z, q.log_prob(z)


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


class VAE(DensityFamily):
    """encoder: x -> features; posterior: features -> q(z|x); decoder: z -> params; likelihood: params -> p(x|z).

    condition (optional, model=cvae): labels y (B,) -> (B, E), appended to the encoder features and to z,
    giving q(z|x, y) and p(x|z, y); build.py widens the posterior head and the decoder input by E."""

    latent_kind = part_kind = LatentKind.CONTINUOUS

    def __init__(self, encoder: nn.Module, posterior: nn.Module, decoder: nn.Module, likelihood: nn.Module,
                 prior: nn.Module, condition: nn.Module | None = None):
        super().__init__(encoder, posterior, decoder, likelihood, prior, condition)

    @property
    def layer_dims(self) -> list[int]:
        return [self.posterior.out_features]

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """(B, C, H, W) -> q(z|x), batch (B,), event (D,). Labels `y` are offered to every model; an
        unconditional one (condition=None) ignores them."""
        return self.posterior(with_label(self.encoder(x), y, self.condition))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """z (..., D) (labels y (B,) with z's last batch dim B) -> p(x|z) with batch shape (...), event (C, H, W)."""
        z = with_label(z, y, self.condition)  # (..., D + E)
        params = self.decoder(z.reshape(-1, z.shape[-1]))  # (N, P*C, H, W)
        return self.likelihood(params.view(*z.shape[:-1], *params.shape[1:]))

    def latent_terms(self, x: torch.Tensor, y: torch.Tensor | None = None, num_samples: int = 1) -> LatentTerms:
        """Draw S reparameterized z ~ q(z|x) and score them under the likelihood, prior and posterior."""
        q, p = self.encode(x, y), self.prior_dist()
        z, log_qz = sample_with_log_prob(q, num_samples, self.posterior.density_anywhere)  # (S, B, D), (S, B)
        return LatentTerms(log_px=self.decode(z, y).log_prob(x), log_pz=p.log_prob(z), log_qz=log_qz,
                           kl_per_dim=kl_per_dim(q, p), z=z, q=q, p=p)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """Reconstruction distribution p(x|z = E_q[z]) (for pictures; flows without a mean: one draw)."""
        q = self.encode(x, y)
        return self.decode(q.mean if self.has_posterior_mean else q.sample(), y)
