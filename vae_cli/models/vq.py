"""VQ-VAE (van den Oord et al. 2017): encoder grid z_e -> nearest of K codes -> decoder.

The quantizer sits in the posterior's place (q(k|x) is a deterministic one-hot); the stage-1 prior over
codes is uniform (it only serves pictures until `vae-prior` fits an autoregressive one).
"""
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Categorical, Distribution, Independent

from vae_cli.errors import ConfigError, UserError
from vae_cli.models.base import CodeTerms, Encode, Fitted, LatentKind, NoDensityFamily, PosteriorHead, Prior
from vae_cli.models.layers import one_hot


@dataclass
class Quantized:
    z_e: torch.Tensor  # (B, D, h, w) encoder output
    z_q: torch.Tensor  # (B, D, h, w) nearest codes, straight-through: forward value e_k, gradient to z_e
    codes: torch.Tensor  # (B, h, w) int64 code indices
    codebook_loss: torch.Tensor  # (B,) ||sg(z_e) - e||^2 summed over (D, h, w)
    commitment: torch.Tensor  # (B,) ||z_e - sg(e)||^2 summed over (D, h, w)


class VectorQuantizer(PosteriorHead):
    """Features (B, F, h, w) -> 1x1 conv to z_e (B, D, h, w) -> nearest code of a K x D codebook.

    ema: the codebook follows exponential moving averages of its assigned encodings (decay) instead of
    learning from the codebook loss. restart_threshold: a code whose moving-average count of assignments
    per batch falls below it is moved onto a random encoding of the batch (0 disables restarts).
    The first training batch initializes every code on a random encoding (codes start where the data is).
    """

    kind = LatentKind.CODE_GRID
    has_mean = False  # a deterministic code: no posterior mean, no active units

    def __init__(self, in_features: int, num_codes: int = 128, code_dim: int = 16, ema: bool = False,
                 decay: float = 0.99, restart_threshold: float = 1.0, eps: float = 1e-5):
        super().__init__()
        if num_codes < 2 or code_dim < 1 or not 0 < decay < 1 or restart_threshold < 0:
            raise ConfigError(f"posterior=vq: num_codes={num_codes} >= 2, code_dim={code_dim} >= 1, "
                              f"decay={decay} in (0, 1) and restart_threshold={restart_threshold} >= 0 required")
        self.num_codes, self.out_features, self.ema = num_codes, code_dim, ema
        self.decay, self.restart_threshold, self.eps = decay, restart_threshold, eps
        self.proj = nn.Conv2d(in_features, code_dim, 1)
        init = torch.empty(num_codes, code_dim).uniform_(-1 / num_codes, 1 / num_codes)
        if ema:
            self.register_buffer("codebook", init)
            self.register_buffer("cluster_size", torch.ones(num_codes))  # as if each code held itself
            self.register_buffer("embed_sum", init.clone())
        else:
            self.codebook = nn.Parameter(init)
        self.register_buffer("usage", torch.ones(num_codes))  # moving-average assignments per batch
        self.register_buffer("initialized", torch.tensor(False))

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """z (M, D) -> (M,) index of the closest code in squared Euclidean distance."""
        e = self.codebook.detach()
        d = z.pow(2).sum(1, keepdim=True) - 2 * z @ e.t() + e.pow(2).sum(1)  # (M, K)
        return d.argmin(1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (N, h, w) -> code vectors (N, D, h, w)."""
        return F.embedding(codes, self.codebook).permute(0, 3, 1, 2)

    def forward(self, h: torch.Tensor) -> Quantized:
        return self.quantize(self.proj(h).float())

    def quantize(self, z_e: torch.Tensor) -> Quantized:
        """z_e (B, D, h, w) -> nearest codes; in training, the codebook is updated AFTER the lookup, so z_q and
        the codes come from the same (old) codebook, as in the reference implementations."""
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, z_e.shape[1])  # (M, D), M = B*h*w
        codes = self.nearest(flat.detach())
        e = self.lookup(codes.view(z_e.shape[0], *z_e.shape[2:]))  # (B, D, h, w): a copy, made before any update
        if self.training:
            self.update(flat.detach(), codes)
        codes = codes.view(z_e.shape[0], *z_e.shape[2:])
        codebook_loss = (e - z_e.detach()).pow(2).flatten(1).sum(1)
        commitment = (z_e - e.detach()).pow(2).flatten(1).sum(1)
        z_q = z_e + (e - z_e).detach()  # straight-through
        return Quantized(z_e, z_q, codes, codebook_loss, commitment)

    @torch.no_grad()
    def update(self, z: torch.Tensor, codes: torch.Tensor) -> None:
        """Training-time codebook upkeep from encodings z (M, D) and their codes (M,)."""
        assigned = one_hot(codes, self.num_codes, z.dtype)  # (M, K)
        counts = assigned.sum(0)  # (K,)
        self.usage.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        if self.ema:
            self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
            self.embed_sum.mul_(self.decay).add_(assigned.t() @ z, alpha=1 - self.decay)
            n = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.eps) / (n + self.num_codes * self.eps) * n  # Laplace
            self.codebook.copy_(self.embed_sum / smoothed.unsqueeze(1))
        self.restart_dead(z)

    @torch.no_grad()
    def restart_dead(self, z: torch.Tensor) -> None:
        """Codes used less than `restart_threshold` per batch (moving average) jump onto random encodings;
        all of them on the first training batch. No host sync: a masked copy."""
        dead = ((self.usage < self.restart_threshold) | ~self.initialized).unsqueeze(1)  # (K, 1)
        self.initialized.fill_(True)
        picks = z[torch.randint(len(z), (self.num_codes,), device=z.device)]  # (K, D)
        self.codebook.data.copy_(torch.where(dead, picks, self.codebook.data))
        self.usage.copy_(torch.where(dead.squeeze(1), torch.ones_like(self.usage), self.usage))
        if self.ema:
            self.embed_sum.copy_(torch.where(dead, picks, self.embed_sum))
            self.cluster_size.copy_(torch.where(dead.squeeze(1), torch.ones_like(self.usage), self.cluster_size))


class UniformCodes(Prior):
    """The stage-1 prior: every code equally likely at every grid position (build.py fills `grid_shape`)."""

    kind = LatentKind.CODE_GRID
    fill = ("grid_shape",)

    def __init__(self, num_codes: int, grid_shape: tuple[int, int]):
        super().__init__()
        self.grid_shape = tuple(grid_shape)
        self.register_buffer("logits", torch.zeros(num_codes))

    def forward(self, encode: Encode | None = None) -> Distribution:
        """-> batch (), event (h, w) of int64 code indices."""
        return Independent(Categorical(logits=self.logits.expand(*self.grid_shape, -1)), 2)


class VQVAE(NoDensityFamily):
    """encoder: x -> (B, F, h, w); posterior: VectorQuantizer; decoder: code vectors -> params; likelihood.

    No density (no ELBO): objective=vq calls `code_terms`. Latent space: codes (B, h, w); edit space: the
    continuous pre-quantization z_e (B, D, h, w), quantized on decoding. Prior samples come from the
    autoregressive code prior vae-prior fits after training (`fitted`)."""

    latent_kind = part_kind = LatentKind.CODE_GRID

    def __init__(self, encoder: nn.Module, posterior: VectorQuantizer, decoder: nn.Module, likelihood: nn.Module,
                 prior: nn.Module):
        super().__init__(encoder, posterior, decoder, likelihood, prior)
        if not isinstance(getattr(encoder, "grid_shape", None), tuple):
            raise ConfigError(f"model=vqvae needs a grid encoder (model.encoder: GridEncoder); got "
                              f"{type(encoder).__name__}")

    @property
    def grid_shape(self) -> tuple[int, int]:
        return tuple(self.encoder.grid_shape)

    @property
    def layer_dims(self) -> list[int]:
        return [self.grid_shape[0] * self.grid_shape[1]]

    def quantize(self, x: torch.Tensor) -> Quantized:
        return self.posterior(self.encoder(x))

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) -> codes (B, h, w) int64 (deterministic; labels are ignored)."""
        return self.quantize(x).codes

    def decode(self, codes: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """codes (..., h, w) int64 -> p(x|codes), batch (...), event (C, H, W)."""
        lead = codes.shape[:-2]
        params = self.decoder(self.posterior.lookup(codes.reshape(-1, *codes.shape[-2:])))
        return self.likelihood(params.view(*lead, *params.shape[1:]))

    def encode_point(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.posterior.proj(self.encoder(x)).float()  # z_e (B, D, h, w)

    def decode_point(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        return self.likelihood(self.decoder(self.posterior.quantize(z).z_q))

    def code_terms(self, x: torch.Tensor) -> CodeTerms:
        """-> the quantization and log p(x | z_q) (B,) in nats, with the straight-through gradient."""
        q = self.quantize(x)
        return CodeTerms(log_px=self.likelihood(self.decoder(q.z_q)).log_prob(x), codes=q.codes,
                         codebook_loss=q.codebook_loss, commitment=q.commitment, num_codes=self.posterior.num_codes)

    def sample_latents(self, n: int, temperature: float = 1.0, fitted: Fitted | None = None) -> torch.Tensor:
        """n code grids (n, h, w) from the code prior `fitted()` loads (logits / temperature)."""
        if fitted is None:
            raise UserError(f"{type(self).__name__}: prior samples need the code prior vae-prior fits")
        return fitted().sample(n, self.grid_shape, temperature)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """Reconstruction p(x | quantized encoding), for pictures."""
        return self.likelihood(self.decoder(self.quantize(x).z_q))
