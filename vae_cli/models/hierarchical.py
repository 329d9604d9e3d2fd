"""A VAE with L stochastic layers z_1 (next to x) ... z_L (top), in the IWAE-paper / ladder style.

Generative, top-down:  p(z_L) p(z_{L-1} | z_L) ... p(z_1 | z_2) p(x | z_1).
Inference, ladder style: a deterministic bottom-up pass d_0 = f_0(x), d_l = f_l(d_{l-1}); then top-down
q(z_L | x) = posterior(d_{L-1}) and q(z_l | z_{l+1}, x) = N(MLP([z_{l+1}, d_{l-1}])).
The prior and posterior groups supply p(z_L) and q(z_L | x), so prior=vamp and posterior=iaf apply to the top.
"""
import torch
import torch.nn as nn
from torch.distributions import Distribution, kl_divergence

from vae_cli.errors import ConfigError
from vae_cli.models.layers import mlp
from vae_cli.models.posteriors import DiagonalGaussian
from vae_cli.models.vae import LatentTerms, kl_per_dim, point_estimate, sample_with_log_prob


class LadderEncoder(nn.Module):
    """x -> [d_0, ..., d_{L-1}]: an MLP on the image, then one MLP block per stochastic layer above z_1."""

    def __init__(self, image_shape: tuple[int, int, int], hidden_sizes: list[int] = (200, 200),
                 block_sizes: list[list[int]] = ((100, 100),), activation: str = "Tanh"):
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


class HierarchicalVAE(nn.Module):
    """`lower_dims` are the sizes of z_1 ... z_{L-1}; z_L has `latent_dim` (that of the posterior and prior).

    encode(x) is q(z_L | x); decode(z_L) walks down through the conditional means of p(z_l | z_{l+1});
    latent_terms scores all layers (log q and log p are sums over layers)."""

    def __init__(self, encoder: LadderEncoder, posterior: nn.Module, decoder: nn.Module, likelihood: nn.Module,
                 prior: nn.Module, latent_dim: int, lower_dims: list[int] = (100,),
                 hidden_sizes: list[int] = (100, 100), activation: str = "Tanh"):
        super().__init__()
        if len(getattr(encoder, "feature_sizes", [])) != len(lower_dims) + 1:
            raise ConfigError(f"model=hierarchical: {len(lower_dims) + 1} stochastic layers (lower_dims={list(lower_dims)}) "
                              f"need an encoder with one block per layer above z_1 (model.encoder.block_sizes)")
        self.encoder, self.posterior, self.decoder = encoder, posterior, decoder
        self.likelihood, self.prior = likelihood, prior
        dims = [*lower_dims, latent_dim]  # z_1 ... z_L
        self.p_layers = nn.ModuleList(GaussianLayer(dims[l + 1], dims[l], hidden_sizes, activation)
                                      for l in range(len(lower_dims)))
        self.q_layers = nn.ModuleList(GaussianLayer(dims[l + 1] + encoder.feature_sizes[l], dims[l], hidden_sizes,
                                                    activation) for l in range(len(lower_dims)))

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        return self.posterior(self.encoder(x))  # q(z_L | x)

    def prior_dist(self) -> Distribution:
        return self.prior(encode=self.encode)  # p(z_L)

    def _likelihood_at(self, z1: torch.Tensor) -> Distribution:
        params = self.decoder(z1.reshape(-1, z1.shape[-1]))  # (N, P*C, H, W)
        return self.likelihood(params.view(*z1.shape[:-1], *params.shape[1:]))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """z_L (..., D_L) -> p(x | z_1) with z_l = E[z_l | z_{l+1}] on the way down."""
        for layer in reversed(self.p_layers):
            z = layer(z).mean
        return self._likelihood_at(z)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """Reconstruction through the posterior's point estimates at every layer."""
        ds = self.encoder.features(x)
        z = point_estimate(self.posterior(ds[-1]))
        for l in reversed(range(len(self.q_layers))):
            z = self.q_layers[l](torch.cat([z, ds[l]], -1)).mean
        return self._likelihood_at(z)

    def latent_terms(self, x: torch.Tensor, y: torch.Tensor | None = None, num_samples: int = 1) -> LatentTerms:
        """S samples of all layers. kl_per_layer (B, L), bottom first: the top's closed-form KL (else log q - log p),
        and for l < L the KL(q(z_l | z_{l+1}, x) || p(z_l | z_{l+1})) given the sampled z_{l+1}, averaged over S."""
        ds = self.encoder.features(x)
        q, p = self.posterior(ds[-1]), self.prior_dist()
        z, log_qz = sample_with_log_prob(q, num_samples)  # (S, B, D_L), (S, B)
        log_pz = p.log_prob(z)
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
        return LatentTerms(self._likelihood_at(z).log_prob(x), log_pz, log_qz, per_dim, torch.stack(kl_layers, -1))
