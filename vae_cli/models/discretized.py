"""likelihood=discretized_logistic: the discretized logistic mixture of PixelCNN++ (Salimans et al. 2017), as
NVAE and VDVAE use it on 8-bit images.

Per pixel, K components share one mixture weight over the channels; channel c of component k is a logistic
with mean mu_kc + sum_{j<c} a_kcj * x_j (the earlier channels' values) and scale s_kc, discretized to the 256
bins of width 2/255 on [-1, 1]. The first and last bins take the tails. Probabilities of 8-bit values, so
log_prob is already discrete (discrete_offset 0) and bits/dim compare with the literature's.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Categorical, Distribution, constraints

from vae_cli.errors import ConfigError

HALF_BIN = 1.0 / 255.0  # bins are 2/255 wide on [-1, 1]
TINY_BIN = 1e-5  # below this probability a bin is priced by the density at its centre times its width


class DiscretizedLogisticMixture(Distribution):
    """batch (...), event (C, H, W); values x = v / 255 for v in 0..255 (what `prepare` makes of uint8).

    logits (..., K, H, W); means, log_scales (..., K, C, H, W) on the [-1, 1] scale; coeffs (..., K, C(C-1)/2,
    H, W) in (-1, 1), ordered (1,0), (2,0), (2,1), ..."""

    arg_constraints = {}
    support = constraints.unit_interval

    def __init__(self, logits, means, log_scales, coeffs, validate_args=False):
        self.logits, self.means, self.log_scales, self.coeffs = logits, means, log_scales, coeffs
        super().__init__(logits.shape[:-3], means.shape[-3:], validate_args=False)

    def coupled_means(self, y: torch.Tensor) -> torch.Tensor:
        """Each channel's mean shifted by the earlier channels of `y` (..., 1 or K, C, H, W) -> (..., K, C, H, W)."""
        out, i = [self.means[..., 0, :, :]], 0
        for c in range(1, self.means.shape[-3]):
            shift = sum(self.coeffs[..., i + j, :, :] * y[..., j, :, :] for j in range(c))
            out.append(self.means[..., c, :, :] + shift)
            i += c
        return torch.stack(torch.broadcast_tensors(*out), dim=-3)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., C, H, W) in {0, 1/255, ..., 1} -> log P(x) in nats, summed over pixels and channels (...)."""
        y = (2.0 * x.float() - 1.0).unsqueeze(-4)  # (..., 1, C, H, W) on [-1, 1]
        centred = y - self.coupled_means(y)
        inv_scale = torch.exp(-self.log_scales)
        plus, minus = inv_scale * (centred + HALF_BIN), inv_scale * (centred - HALF_BIN)
        log_cdf_plus = plus - F.softplus(plus)  # log sigmoid: the first bin takes the left tail
        log_sf_minus = -F.softplus(minus)  # log (1 - sigmoid): the last bin takes the right tail
        delta = torch.sigmoid(plus) - torch.sigmoid(minus)
        mid = inv_scale * centred
        log_density_mid = mid - self.log_scales - 2.0 * F.softplus(mid) - math.log(127.5)  # pdf x bin width
        log_mid = torch.where(delta > TINY_BIN, torch.log(delta.clamp_min(1e-12)), log_density_mid)
        log_bins = torch.where(y < -0.999, log_cdf_plus, torch.where(y > 0.999, log_sf_minus, log_mid))
        per_comp = log_bins.sum(-3) + torch.log_softmax(self.logits, dim=-3)  # (..., K, H, W)
        return torch.logsumexp(per_comp, dim=-3).sum((-2, -1))

    @torch.no_grad()
    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """Draws: a component per pixel, then the channels in order, each quantized to its bin -> v / 255."""
        k = self.logits.shape[-3]
        comp = Categorical(logits=self.logits.movedim(-3, -1)).sample(sample_shape)  # (S..., ..., H, W)
        pick = F.one_hot(comp, k).movedim(-1, -3).unsqueeze(-3).to(self.means.dtype)  # (S..., ..., K, 1, H, W)
        ys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        for c in range(self.means.shape[-3]):
            sel = lambda t: (t[..., c, :, :].unsqueeze(-3) * pick).sum(-4).squeeze(-3)  # noqa: E731
            mean = sel(self.means) + sum(sel_coeff(self.coeffs, pick, c, j) * ys[j] for j in range(c))
            u = torch.rand_like(mean).clamp(1e-5, 1 - 1e-5)
            cont = mean + torch.exp(sel(self.log_scales)) * (torch.log(u) - torch.log1p(-u))
            values.append(torch.round((cont.clamp(-1, 1) + 1) * 127.5))  # the bin: 0..255
            ys.append(values[-1] / 127.5 - 1)  # its centre on [-1, 1], for the later channels' means
        return torch.stack(values, dim=-3) / 255

    @property
    def mean(self) -> torch.Tensor:
        """For pictures: the mixture of the components' (channel-coupled, clipped) means, in [0, 1]; not the
        exact mean of the discretized mixture."""
        y = self.means.clamp(-1, 1)
        for _ in range(self.means.shape[-3] - 1):  # couple each channel to the component's own earlier means
            y = self.coupled_means(y).clamp(-1, 1)
        weights = torch.softmax(self.logits, dim=-3).unsqueeze(-3)  # (..., K, 1, H, W)
        return ((weights * y).sum(-4) + 1) / 2


def sel_coeff(coeffs: torch.Tensor, pick: torch.Tensor, c: int, j: int) -> torch.Tensor:
    """The picked component's coefficient a_{c,j}: (..., K, n, H, W) -> (..., H, W)."""
    index = c * (c - 1) // 2 + j
    return (coeffs[..., index, :, :].unsqueeze(-3) * pick).sum(-4).squeeze(-3)


class DiscretizedLogisticLikelihood(nn.Module):
    """Decoder params (..., K (1 + 2C + C(C-1)/2), H, W) -> DiscretizedLogisticMixture over uint8 images."""

    binary = False
    discrete_offset = 0.0  # log_prob is a probability of 8-bit values already

    def __init__(self, image_shape: tuple[int, int, int], num_mixtures: int = 10, min_log_scale: float = -7.0):
        super().__init__()
        if isinstance(num_mixtures, bool) or not isinstance(num_mixtures, int) or num_mixtures < 1:
            raise ConfigError(f"likelihood.num_mixtures={num_mixtures!r} must be a positive integer (e.g. 10)")
        if not (isinstance(min_log_scale, (int, float)) and math.isfinite(min_log_scale)):
            raise ConfigError(f"likelihood.min_log_scale={min_log_scale!r} must be a finite number (e.g. -7)")
        self.image_shape, self.k, self.min_log_scale = tuple(image_shape), num_mixtures, float(min_log_scale)
        c = self.image_shape[0]
        self.sizes = [1, c, c, c * (c - 1) // 2]  # logits, means, log scales, coefficients; each x K

    @property
    def out_channels(self) -> int:
        return self.k * sum(self.sizes)

    def forward(self, params: torch.Tensor) -> DiscretizedLogisticMixture:
        *batch, _, h, w = params.shape
        logits, means, log_scales, coeffs = params.float().split([self.k * s for s in self.sizes], dim=-3)
        shape = lambda t: t.reshape(*batch, self.k, -1, h, w)  # noqa: E731  (..., K*n, H, W) -> (..., K, n, H, W)
        return DiscretizedLogisticMixture(logits, shape(means), shape(log_scales).clamp_min(self.min_log_scale),
                                          torch.tanh(shape(coeffs)))

    @staticmethod
    def prepare(images: torch.Tensor) -> torch.Tensor:
        """uint8 v -> v / 255: the 8-bit values themselves (no dequantization noise)."""
        return images.float() / 255.0

    @staticmethod
    def mean(dist: DiscretizedLogisticMixture) -> torch.Tensor:
        return dist.mean
