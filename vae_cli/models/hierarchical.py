"""A VAE with L stochastic layers z_1 (next to x) ... z_L (top), in the IWAE-paper / ladder style.

Generative, top-down:  p(z_L) p(z_{L-1} | z_L) ... p(z_1 | z_2) p(x | z_1).
Inference, ladder style: a deterministic bottom-up pass d_0 = f_0(x), d_l = f_l(d_{l-1}); then top-down
q(z_L | x) = posterior(d_{L-1}) and q(z_l | z_{l+1}, x) = N(MLP([z_{l+1}, d_{l-1}])).
The prior and posterior groups supply p(z_L) and q(z_L | x), so prior=vamp and posterior=iaf apply to the top.
"""
from typing import Annotated

import torch
import torch.nn as nn
from torch.distributions import Distribution, kl_divergence

from vae_cli.checks import SIZES, WIDTHS, check_arguments
from vae_cli.errors import ConfigError
from vae_cli.models.layers import mlp
from vae_cli.models.posteriors import DiagonalGaussian
from vae_cli.models.base import DensityFamily, LatentKind, LatentTerms
from vae_cli.models.vae import kl_per_dim, sample_with_log_prob


class LadderEncoder(nn.Module):
    """x -> [d_0, ..., d_{L-1}]: an MLP on the image, then one MLP block per stochastic layer above z_1."""

    def __init__(self, image_shape: tuple[int, int, int], hidden_sizes: Annotated[list[int], WIDTHS] = (200, 200),
                 block_sizes: list[list[int]] = ((100, 100),), activation: str = "Tanh"):
        check_arguments("model.encoder", LadderEncoder, locals())
        super().__init__()
        sizes = [list(hidden_sizes), *[list(b) for b in block_sizes]]
        ins = [int(torch.tensor(image_shape).prod())] + [s[-1] for s in sizes[:-1]]
        self.blocks = nn.ModuleList(mlp([n, *s], activation, final_activation=True) for n, s in zip(ins, sizes))
        self.feature_sizes = [s[-1] for s in sizes]
        self.out_features = self.feature_sizes[-1]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, out = x.flatten(1), []  # (B, C*H*W)
        for block in self.blocks:
            h = block(h)
            out.append(h)  # d_l (B, F_l)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[-1]  # (B, F_{L-1}): what q(z_L | x) reads


class GaussianLayer(nn.Module):
    """features (..., F) -> N(mu, diag sigma^2) over (D,) through an MLP."""

    def __init__(self, in_features: int, latent_dim: int, hidden_sizes: list[int], activation: str):
        super().__init__()
        self.net = mlp([in_features, *hidden_sizes], activation, final_activation=True)
        self.head = DiagonalGaussian(hidden_sizes[-1], latent_dim)

    def forward(self, h: torch.Tensor) -> Distribution:
        return self.head(self.net(h))


class HierarchicalVAE(DensityFamily):
    """`lower_dims` are the sizes of z_1 ... z_{L-1}; z_L has `latent_dim` (that of the posterior and prior).

    encode(x) is q(z_L | x); generate(z_L) samples z_l ~ p(z_l | z_{l+1}) down to z_1 (ancestral), decode(z_L)
    walks down through their conditional means; latent_terms scores all layers (log q, log p: sums over layers)."""

    latent_kind, part_kind = LatentKind.HIERARCHY, LatentKind.CONTINUOUS

    def __init__(self, encoder: LadderEncoder, posterior: nn.Module, decoder: nn.Module, likelihood: nn.Module,
                 prior: nn.Module, latent_dim: int, lower_dims: list[int] = (100,),
                 hidden_sizes: Annotated[list[int], SIZES] = (100, 100), activation: str = "Tanh"):
        check_arguments("model", HierarchicalVAE, locals())
        super().__init__(encoder, posterior, decoder, likelihood, prior)
        if not isinstance(encoder, LadderEncoder) or len(encoder.feature_sizes) != len(lower_dims) + 1:
            blocks = len(getattr(encoder, "feature_sizes", [None])) - 1
            raise ConfigError(f"model=hierarchical: {len(lower_dims) + 1} stochastic layers (lower_dims={list(lower_dims)}) "
                              f"need a LadderEncoder with one block per layer above z_1 (model.encoder.block_sizes has "
                              f"{blocks} blocks; give it {len(lower_dims)})")
        dims = [*lower_dims, latent_dim]  # z_1 ... z_L
        self.dims = dims
        self.p_layers = nn.ModuleList(GaussianLayer(dims[l + 1], dims[l], hidden_sizes, activation)
                                      for l in range(len(lower_dims)))
        self.q_layers = nn.ModuleList(GaussianLayer(dims[l + 1] + encoder.feature_sizes[l], dims[l], hidden_sizes,
                                                    activation) for l in range(len(lower_dims)))

    @property
    def layer_dims(self) -> list[int]:
        return list(self.dims)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        return self.posterior(self.encoder(x))  # q(z_L | x)

    def _likelihood_at(self, z1: torch.Tensor) -> Distribution:
        params = self.decoder(z1.reshape(-1, z1.shape[-1]))  # (N, P*C, H, W)
        return self.likelihood(params.view(*z1.shape[:-1], *params.shape[1:]))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """z_L (..., D_L) -> p(x | z_1) with z_l = E[z_l | z_{l+1}] on the way down."""
        return self.generate(z, y, ancestral=False)

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None, ancestral: bool = True,
                 temperature: float = 1.0) -> Distribution:
        """z_L (..., D_L) -> p(x | z_1): z_l ~ p(z_l | z_{l+1}) (noise times temperature), or its mean."""
        for layer in reversed(self.p_layers):
            p_l = layer(z)
            z = p_l.mean + temperature * p_l.stddev * torch.randn_like(p_l.mean) if ancestral else p_l.mean
        return self._likelihood_at(z)

    def layer_means(self, x: torch.Tensor, y: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Posterior means down the ladder, z_l = E[z_l | z_{l+1}, x]: [(B, D_1), ..., (B, D_L)]."""
        ds = self.encoder.features(x)
        means = [self.posterior(ds[-1]).mean]
        for l in reversed(range(len(self.q_layers))):
            means.insert(0, self.q_layers[l](torch.cat([means[0], ds[l]], -1)).mean)
        return means

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """Reconstruction through the posterior's means at every layer (one draw at the top for flows)."""
        if not self.has_posterior_mean:
            return self.decode(self.encode(x, y).sample())
        return self._likelihood_at(self.layer_means(x, y)[0])

    def latent_terms(self, x: torch.Tensor, y: torch.Tensor | None = None, num_samples: int = 1) -> LatentTerms:
        """S samples of all layers. kl_per_layer (B, L), bottom first: the top's closed-form KL (else log q - log p),
        and for l < L the KL(q(z_l | z_{l+1}, x) || p(z_l | z_{l+1})) given the sampled z_{l+1}, averaged over S."""
        ds = self.encoder.features(x)
        q, p = self.posterior(ds[-1]), self.prior_dist()
        z_top, log_qz = sample_with_log_prob(q, num_samples, self.posterior.density_anywhere)  # (S, B, D_L), (S, B)
        z, log_pz = z_top, p.log_prob(z_top)
        top_dims = kl_per_dim(q, p)  # (B, D_L) or None
        kl_dims, kl_layers = [top_dims], [top_dims.sum(-1) if top_dims is not None else (log_qz - log_pz).mean(0)]
        for l in reversed(range(len(self.q_layers))):
            q_l = self.q_layers[l](torch.cat([z, ds[l].expand(num_samples, -1, -1)], -1))  # batch (S, B)
            p_l = self.p_layers[l](z)
            z = q_l.rsample()  # (S, B, D_l)
            log_qz, log_pz = log_qz + q_l.log_prob(z), log_pz + p_l.log_prob(z)
            kl_dims.insert(0, kl_divergence(q_l.base_dist, p_l.base_dist).mean(0))  # (B, D_l)
            kl_layers.insert(0, kl_dims[0].sum(-1))
        per_dim = torch.cat(kl_dims, -1) if top_dims is not None else None  # (B, D_1 + ... + D_L)
        return LatentTerms(log_px=self._likelihood_at(z).log_prob(x), log_pz=log_pz, log_qz=log_qz, kl_per_dim=per_dim,
                           kl_per_layer=torch.stack(kl_layers, -1), z=z_top, q=q, p=p)
