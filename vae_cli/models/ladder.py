"""A VAE with L stochastic layers that trains (NVAE-style residual ladder; Vahdat & Kautz 2020, Sonderby 2016).

Generative, top-down:  z_L ~ p(z_L);  h_{L-1} = TD_L(z_L),  h_{l-1} = TD_l([z_l, h_l]);
    p(z_l | z_{>l}) = N(mu_p, sigma_p) with (mu_p, sigma_p) = (0, 1) + a ZERO-initialized head on h_l;
    p(x | z_1, h_1): the decoder reads [z_1, h_1]; the h_1 columns of its first Linear start at zero.
Inference: a deterministic bottom-up pass d_0 = f_0(x), d_l = f_l(d_{l-1}); q(z_L | x) = posterior(d_{L-1}),
    q(z_l | z_{>l}, x) = N(mu_p + dmu, sigma_p * dsigma) (residual normal), (dmu, dsigma) one Linear on
    [d_{l-1}, h_l] whose h_l columns start at zero.
At initialization the model is therefore exactly a one-layer VAE on z_1 (x -> d_0 -> q(z_1|x) -> decoder)
plus unused upper layers, so the hierarchy can only add to what the one-layer model learns.

KL balancing (NVAE, off by default: kl_balance_steps=0): during the first `kl_balance_steps` training calls,
the gradient of each layer's KL (and of its log q - log p under IWAE) is scaled by
    gamma_l = L * c_l / sum_k c_k,   c_l = (mean_batch KL_l + 0.01) / alpha_l,   alpha_l = D_l / sum_k D_k,
(stop-gradient, mean 1 over layers), so layers with little KL are pushed less towards the prior. Values are
not changed: every reported number (and the loss value) stays the exact ELBO / IWAE bound.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from vae_cli.errors import ConfigError
from vae_cli.models.layers import mlp
from vae_cli.models.base import DensityFamily, LatentKind, LatentTerms
from vae_cli.models.vae import kl_per_dim, sample_with_log_prob

SOFTPLUS_INV_ONE = math.log(math.e - 1.0)  # softplus(SOFTPLUS_INV_ONE) = 1


def diag_normal(loc: torch.Tensor, scale: torch.Tensor) -> Independent:
    return Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)


def widen_first_linear(module: nn.Module, in_features: int, extra: int) -> None:
    """Append `extra` zero input columns to the first nn.Linear of `module` (which must read `in_features`)."""
    lin = next((m for m in module.modules() if isinstance(m, nn.Linear)), None)
    if lin is None or lin.in_features != in_features:
        raise ConfigError(f"model=ladder: the decoder's first Linear must read z_1 ({in_features} dims); "
                          f"set model.decoder.latent_dim to model.lower_dims[0] (or latent_dim for one layer)")
    zeros = torch.zeros(lin.out_features, extra, dtype=lin.weight.dtype)
    lin.weight = nn.Parameter(torch.cat([lin.weight.data, zeros], 1))  # (out, D_1 + H), skip columns = 0
    lin.in_features += extra


class PriorLayer(nn.Module):
    """h_l (..., H) -> p(z_l | z_{>l}) = N(mu_p, sigma_p); the head starts at zero so p = N(0, I) at init."""

    def __init__(self, stream: int, dim: int, min_scale: float):
        super().__init__()
        self.head, self.min_scale = nn.Linear(stream, 2 * dim), min_scale
        nn.init.zeros_(self.head.weight), nn.init.zeros_(self.head.bias)

    def forward(self, h: torch.Tensor) -> Independent:
        loc, raw = self.head(h).float().chunk(2, -1)
        return diag_normal(loc, F.softplus(raw + SOFTPLUS_INV_ONE).clamp_min(self.min_scale))


class ResidualPosterior(nn.Module):
    """[d_{l-1}, h_l] -> q(z_l | z_{>l}, x) = N(mu_p + dmu, sigma_p * dsigma); the h_l columns start at zero,
    so at init q reads d_{l-1} alone, exactly as a one-layer DiagonalGaussian head does."""

    def __init__(self, features: int, stream: int, dim: int, min_scale: float):
        super().__init__()
        self.head, self.min_scale = nn.Linear(features + stream, 2 * dim), min_scale
        nn.init.zeros_(self.head.weight[:, features:])

    def forward(self, d: torch.Tensor, h: torch.Tensor, p: Independent) -> Independent:
        dmu, raw = self.head(torch.cat([d, h], -1)).float().chunk(2, -1)
        base = p.base_dist
        return diag_normal(base.loc + dmu, base.scale * (F.softplus(raw) + self.min_scale))


def balance_gradient(t: torch.Tensor, gamma: torch.Tensor | float) -> torch.Tensor:
    """Same value as t, gradient scaled by gamma (a stop-gradient coefficient)."""
    return gamma * t + (1 - gamma) * t.detach()


def balance_coefficients(kl_layers: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """kl_layers (B, L), alpha (L,) = D_l / sum_k D_k -> gamma (L,), NVAE's kl_balancer: proportional to
    (KL_l + 0.01) / alpha_l, mean 1."""
    c = (kl_layers.detach().mean(0).abs() + 0.01) / alpha.to(kl_layers.dtype)
    return len(alpha) * c / c.sum()


class LadderVAE(DensityFamily):
    """`lower_dims` are the sizes of z_1 ... z_{L-1} (may be empty: a one-layer VAE); z_L has `latent_dim`.

    The family contract (models/base.py) for a hierarchy: encode(x) is q(z_L | x); generate(z_L) draws
    z_l ~ p(z_l | z_{>l}) down to z_1 (ancestral); decode(z_L) walks down through the conditional means;
    latent_terms scores all layers."""

    latent_kind, part_kind = LatentKind.HIERARCHY, LatentKind.CONTINUOUS

    def __init__(self, encoder: nn.Module, posterior: nn.Module, decoder: nn.Module, likelihood: nn.Module,
                 prior: nn.Module, latent_dim: int, lower_dims: list[int] = (100,),
                 td_sizes: list[int] = (100, 100), activation: str = "ELU", min_scale: float = 1e-5,
                 kl_balance_steps: int = 0):
        super().__init__(encoder, posterior, decoder, likelihood, prior)
        dims, feats = [*lower_dims, latent_dim], list(getattr(encoder, "feature_sizes", []))
        if len(feats) != len(dims):
            raise ConfigError(f"model=ladder: {len(dims)} stochastic layers (lower_dims={list(lower_dims)}) need an "
                              f"encoder with one block per layer above z_1 (model.encoder.block_sizes has "
                              f"{max(len(feats) - 1, 0)} blocks; give it {len(dims) - 1})")
        if kl_balance_steps < 0 or not td_sizes:
            raise ConfigError(f"model=ladder: kl_balance_steps={kl_balance_steps} must be >= 0 and "
                              f"td_sizes={list(td_sizes)} non-empty")
        self.dims, self.kl_balance_steps, stream = dims, int(kl_balance_steps), td_sizes[-1]  # H
        top = len(dims) - 1
        # td[i - 1] makes the stream of layer i - 1 from z_i (0-based) and, below the top, the stream of layer i
        self.td = nn.ModuleList(mlp([dims[i] + (stream if i < top else 0), *td_sizes], activation, True)
                                for i in range(1, len(dims)))
        self.p_layers = nn.ModuleList(PriorLayer(stream, dims[i], min_scale) for i in range(top))
        self.q_layers = nn.ModuleList(ResidualPosterior(feats[i], stream, dims[i], min_scale) for i in range(top))
        if top:
            widen_first_linear(decoder, dims[0], stream)
        self.register_buffer("balance_calls", torch.zeros((), dtype=torch.long))
        # alpha_l = D_l / sum_k D_k, made once (not from host data at every step); not in checkpoints
        self.register_buffer("balance_alpha", torch.tensor(dims, dtype=torch.float32) / sum(dims), persistent=False)

    @property
    def num_layers(self) -> int:
        return len(self.dims)

    @property
    def layer_dims(self) -> list[int]:
        return list(self.dims)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        return self.posterior(self.encoder(x))  # q(z_L | x)

    def _stream(self, i: int, z: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
        """z_i (..., D_i) and the stream at layer i (None at the top) -> the stream at layer i - 1 (..., H)."""
        return self.td[i - 1](z if h is None else torch.cat([z, h.to(z.dtype)], -1))

    def _likelihood_at(self, z1: torch.Tensor, h: torch.Tensor | None) -> Distribution:
        z = z1 if h is None else torch.cat([z1, h.to(z1.dtype)], -1)  # (..., D_1 [+ H])
        params = self.decoder(z.reshape(-1, z.shape[-1]))  # (N, P*C, H, W)
        return self.likelihood(params.view(*z.shape[:-1], *params.shape[1:]))

    def _walk_down(self, z: torch.Tensor, pick) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """From z_L through p(z_l | z_{>l}), taking z_l = pick(p_l) -> ([z_1, ..., z_L], stream at layer 1)."""
        zs, h = [z], None
        for i in reversed(range(1, self.num_layers)):
            h = self._stream(i, zs[0], h)
            zs.insert(0, pick(self.p_layers[i - 1](h)))
        return zs, h

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """z_L (..., D_L) -> p(x | z_1, h_1) with z_l = E[z_l | z_{>l}] on the way down."""
        return self.generate(z, y, ancestral=False)

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None, ancestral: bool = True,
                 temperature: float = 1.0) -> Distribution:
        """z_L (..., D_L) -> p(x | z_1, h_1): z_l ~ p(z_l | z_{>l}) with its noise times `temperature`
        (ancestral), or z_l = its mean."""
        zs, h = self.walk_down(z, ancestral, temperature)
        return self._likelihood_at(zs[0], h)

    def walk_down(self, z: torch.Tensor, ancestral: bool = True, temperature: float = 1.0
                  ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """From z_L through p(z_l | z_{>l}) -> ([z_1, ..., z_L], the stream at layer 1)."""
        def pick(p: Independent) -> torch.Tensor:
            return p.mean + temperature * p.stddev * torch.randn_like(p.mean) if ancestral else p.mean
        return self._walk_down(z, pick)

    def _posterior_path(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """The posterior-mean path: ([E q(z_1 | ...), ..., E q(z_L | x)] each (B, D_l), stream at layer 1);
        a top without a closed-form mean (flows) contributes one draw."""
        ds = self.encoder.features(x)
        q = self.posterior(ds[-1])
        zs, h = [q.mean if self.has_posterior_mean else q.sample()], None
        for i in reversed(range(1, self.num_layers)):
            h = self._stream(i, zs[0], h)
            zs.insert(0, self.q_layers[i - 1](ds[i - 1], h, self.p_layers[i - 1](h)).mean)
        return zs, h

    def layer_means(self, x: torch.Tensor, y: torch.Tensor | None = None) -> list[torch.Tensor]:
        """E q(z_l | ...) per layer on the posterior-mean path, bottom first: [(B, D_1), ..., (B, D_L)]."""
        return self._posterior_path(x)[0]

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """Reconstruction through the posterior's point estimates at every layer."""
        zs, h = self._posterior_path(x)
        return self._likelihood_at(zs[0], h)

    def latent_terms(self, x: torch.Tensor, y: torch.Tensor | None = None, num_samples: int = 1) -> LatentTerms:
        """S samples of all layers. kl_per_layer (B, L), bottom first: the top's closed-form KL (else log q - log p),
        and for l < L the KL(q(z_l | z_{>l}, x) || p(z_l | z_{>l})) given the sampled layers above, averaged
        over S. kl_per_dim (B, D_1 + ... + D_L), z_1's dims first (None when the top has no closed form)."""
        ds = self.encoder.features(x)
        q, p = self.posterior(ds[-1]), self.prior_dist()
        z_top, log_q = sample_with_log_prob(q, num_samples, self.posterior.density_anywhere)  # (S, B, D_L), (S, B)
        z = z_top
        log_p, top_dims = p.log_prob(z), kl_per_dim(q, p)  # (S, B), (B, D_L) or None
        lq, lp, kl_dims = [log_q], [log_p], [top_dims]
        kl_layers = [top_dims.sum(-1) if top_dims is not None else (log_q - log_p).mean(0)]
        h = None
        for i in reversed(range(1, self.num_layers)):
            h = self._stream(i, z, h)  # (S, B, H)
            p_i = self.p_layers[i - 1](h)
            q_i = self.q_layers[i - 1](ds[i - 1].expand(num_samples, -1, -1), h, p_i)
            z = q_i.rsample()  # (S, B, D_i)
            lq.insert(0, q_i.log_prob(z)), lp.insert(0, p_i.log_prob(z))
            kl_dims.insert(0, kl_divergence(q_i.base_dist, p_i.base_dist).mean(0))  # (B, D_i)
            kl_layers.insert(0, kl_dims[0].sum(-1))
        log_px = self._likelihood_at(z, h).log_prob(x)  # (S, B)
        return self._terms(log_px, lq, lp, kl_dims, torch.stack(kl_layers, -1), {"z": z_top, "q": q, "p": p})

    def _terms(self, log_px, lq: list, lp: list, kl_dims: list, kl_layers: torch.Tensor, top: dict) -> LatentTerms:
        """Sum the per-layer terms, with KL balancing's gradient scaling while it is on; `top`: z_L, q, p."""
        gamma = self._balance(kl_layers)
        if gamma is not None:
            lq = [balance_gradient(t, g) for t, g in zip(lq, gamma)]
            lp = [balance_gradient(t, g) for t, g in zip(lp, gamma)]
            kl_dims = [None if t is None else balance_gradient(t, g) for t, g in zip(kl_dims, gamma)]
        per_dim = torch.cat(kl_dims, -1) if kl_dims[-1] is not None else None
        return LatentTerms(log_px=log_px, log_pz=sum(lp), log_qz=sum(lq), kl_per_dim=per_dim, kl_per_layer=kl_layers,
                           **top)

    def _balance(self, kl_layers: torch.Tensor) -> torch.Tensor | None:
        """NVAE's coefficients (L,) during the first kl_balance_steps training calls with gradients, ones after
        (the same values and gradients as no balancing); None when balancing is off or there is no gradient.
        The switch is on the device (balance_calls, counted in place), so a captured step replays it."""
        if not (self.kl_balance_steps and self.training and torch.is_grad_enabled()):
            return None
        on = self.balance_calls < self.kl_balance_steps  # 0-dim bool
        self.balance_calls += on
        return torch.where(on, balance_coefficients(kl_layers, self.balance_alpha), 1.0)
