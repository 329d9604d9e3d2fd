"""Categorical latents (Jang et al. 2017; Maddison et al. 2017): N latents with C classes each.

Training decodes relaxed one-hot samples (Gumbel-softmax at temperature tau; `hard` = straight-through:
the forward value is the one-hot argmax, the gradient that of the relaxed sample). In eval mode the
latents are exact one-hot draws, so the validation ELBO is that of the discrete model.
The KL to the uniform prior is in closed form, per latent: sum_c q_c (log q_c + log C).
"""
import torch
import torch.nn as nn
from torch.distributions import Distribution, Independent, OneHotCategorical, RelaxedOneHotCategorical

from vae_cli.errors import ConfigError
from vae_cli.models.base import DensityFamily, Encode, LatentKind, LatentTerms, PosteriorHead, Prior
from vae_cli.models.layers import one_hot


def _check(num_latents: int, num_classes: int) -> None:
    if num_latents < 1 or num_classes < 2:
        raise ConfigError(f"categorical latents: num_latents={num_latents} must be >= 1, "
                          f"num_classes={num_classes} >= 2")


class CategoricalHead(PosteriorHead):
    """Encoder features (B, F) -> q(z|x) = prod_n Cat(softmax(logits_n)), batch (B,), event (N, C)."""

    kind = LatentKind.CATEGORICAL

    def __init__(self, in_features: int, num_latents: int = 30, num_classes: int = 10):
        super().__init__()
        _check(num_latents, num_classes)
        self.num_latents, self.num_classes = num_latents, num_classes
        self.out_features = num_latents * num_classes  # the decoder's input width
        self.head = nn.Linear(in_features, self.out_features)

    def forward(self, h: torch.Tensor) -> Distribution:
        logits = self.head(h).float().view(-1, self.num_latents, self.num_classes)  # (B, N, C)
        return Independent(OneHotCategorical(logits=logits), 1)


class UniformCategorical(Prior):
    """p(z) = prod_n Cat(1/C): batch (), event (N, C); samples are random one-hots."""

    kind = LatentKind.CATEGORICAL

    def __init__(self, num_latents: int, num_classes: int):
        super().__init__()
        _check(num_latents, num_classes)
        self.register_buffer("logits", torch.zeros(num_latents, num_classes))

    def forward(self, encode: Encode | None = None) -> Distribution:
        return Independent(OneHotCategorical(logits=self.logits), 1)


def categorical_kl(q: OneHotCategorical, p: OneHotCategorical) -> torch.Tensor:
    """KL(q || p) in nats over the last dim, batch shape kept: (..., C) -> (...).

    The closed form of torch's registered rule, with torch.where in place of boolean-mask writes
    (some torch versions write `t[mask] = inf`, a host sync that a CUDA graph capture refuses).
    """
    t = q.probs * (q.logits - p.logits)
    t = torch.where(p.probs == 0, torch.inf, t)  # q puts mass where p has none
    t = torch.where(q.probs == 0, 0.0, t)  # 0 log 0 = 0
    return t.sum(-1)


def gumbel_softmax_sample(logits: torch.Tensor, temperature: float, num_samples: int, hard: bool) -> torch.Tensor:
    """logits (B, N, C) -> relaxed one-hots (S, B, N, C); hard: one-hot forward, relaxed gradient."""
    # a step-tensor knob, or a float (a constant schedule): filled on the device, never copied from the host
    tau = temperature.to(logits.dtype) if torch.is_tensor(temperature) else logits.new_full((), temperature)
    soft = RelaxedOneHotCategorical(tau, logits=logits).rsample((num_samples,))
    if not hard:
        return soft
    return one_hot(soft.argmax(-1), soft.shape[-1], soft.dtype) - soft.detach() + soft  # straight-through


class CategoricalVAE(DensityFamily):
    """encoder: x -> features; posterior: CategoricalHead; decoder: flattened one-hots (N*C) -> params.

    Edit space (encode_point / decode_point): the posterior logits (B, N, C), decoded as softmax probabilities."""

    latent_kind = part_kind = LatentKind.CATEGORICAL

    def __init__(self, encoder: nn.Module, posterior: nn.Module, decoder: nn.Module, likelihood: nn.Module,
                 prior: nn.Module, hard: bool = False):
        super().__init__(encoder, posterior, decoder, likelihood, prior)
        self.hard = hard

    @property
    def layer_dims(self) -> list[int]:
        return [self.posterior.num_latents]  # KL per latent (each a C-class one-hot)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """(B, C, H, W) -> q(z|x), batch (B,), event (N, K). Unconditional: labels are ignored."""
        return self.posterior(self.encoder(x))

    def encode_point(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.encode(x, y).base_dist.logits  # (B, N, C), normalized per latent

    def decode_point(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        return self.decode(torch.softmax(z, -1), y)

    def traverse(self, point: torch.Tensor, dims: torch.Tensor, values: torch.Tensor,
                 y: torch.Tensor | None = None) -> tuple[Distribution, int]:
        """logits (N, C): row r sets latent dims[r] to class 0 .. C-1 (the others at their most probable class);
        `values` do not apply -> (p(x | ...), batch (R*C,); C)."""
        n, c = point.shape
        z = one_hot(point.argmax(-1), c).repeat(len(dims), c, 1, 1)  # (R, C, N, C)
        z[torch.arange(len(dims)), :, dims] = torch.eye(c, device=point.device)  # class k in column k
        return self.decode(z.flatten(0, 1)), c

    def edit_grid(self, size: int) -> None:
        return None  # the edit space is logits: no prior quantiles

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """z (..., N, C) one-hot or relaxed -> p(x|z), batch (...), event (C, H, W)."""
        params = self.decoder(z.reshape(-1, z.shape[-2] * z.shape[-1]))  # (M, P*C, H, W)
        return self.likelihood(params.view(*z.shape[:-2], *params.shape[1:]))

    def latent_terms(self, x: torch.Tensor, y: torch.Tensor | None = None, num_samples: int = 1,
                     temperature: float = 1.0) -> LatentTerms:
        """S samples per example. log q and log p score the one-hot argmax of each sample, which is an
        exact draw from q (Gumbel-max); log p(x|z) scores the relaxed sample while training."""
        q, p = self.encode(x, y), self.prior_dist()
        if self.training:
            z = gumbel_softmax_sample(q.base_dist.logits, temperature, num_samples, self.hard)  # (S, B, N, C)
            z_hard = one_hot(z.argmax(-1), z.shape[-1], z.dtype)
        else:
            z = z_hard = q.sample((num_samples,))
        kl = categorical_kl(q.base_dist, p.base_dist)  # (B, N) closed form
        return LatentTerms(log_px=self.decode(z, y).log_prob(x), log_pz=p.log_prob(z_hard), log_qz=q.log_prob(z_hard),
                           kl_per_dim=kl, z=z, q=q, p=p)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """Reconstruction p(x|z = the most probable class of each latent), for pictures."""
        logits = self.encode(x, y).base_dist.logits
        return self.decode(one_hot(logits.argmax(-1), logits.shape[-1]), y)
