"""The VAE: injected parts, no variants by subclassing."""
import torch
import torch.nn as nn
from torch.distributions import Distribution


class VAE(nn.Module):
    """encoder: x -> features; posterior: features -> q(z|x); decoder: z -> params; likelihood: params -> p(x|z)."""

    def __init__(self, encoder: nn.Module, posterior: nn.Module, decoder: nn.Module, likelihood: nn.Module,
                 prior: nn.Module):
        super().__init__()
        self.encoder, self.posterior, self.decoder = encoder, posterior, decoder
        self.likelihood, self.prior = likelihood, prior

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """(B, C, H, W) -> q(z|x), batch (B,), event (D,). Labels `y` are offered to every model; this one
        is unconditional and ignores them."""
        return self.posterior(self.encoder(x))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """z (..., D) -> p(x|z) with batch shape (...) and event shape (C, H, W)."""
        params = self.decoder(z.reshape(-1, z.shape[-1]))  # (N, P*C, H, W)
        return self.likelihood(params.view(*z.shape[:-1], *params.shape[1:]))

    def prior_dist(self) -> Distribution:
        return self.prior()

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """Reconstruction distribution p(x|z = E_q[z]) (for pictures; training goes through an objective)."""
        return self.decode(self.encode(x, y).mean, y)
