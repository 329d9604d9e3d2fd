"""A small PixelCNN (van den Oord et al. 2016) over a grid of discrete codes: the VQ-VAE's stage-2 prior.

p(k) = prod_i p(k_i | k_<i) in raster order; masked convolutions keep position i from seeing i and after
(mask 'A', first layer) or after i (mask 'B', later layers). Like the original it has a blind spot above-right.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from vae_cli.errors import ConfigError


class MaskedConv2d(nn.Conv2d):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str):
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        c = kernel_size // 2
        mask = torch.ones(kernel_size, kernel_size)
        mask[c, c + (mask_type == "B"):] = 0  # the centre row: from the centre (A) or after it (B)
        mask[c + 1:] = 0  # every row below
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class PixelCNNPrior(nn.Module):
    """codes (B, h, w) int64 in [0, K) -> logits (B, K, h, w) of p(k_i | k_<i)."""

    def __init__(self, num_codes: int, channels: int = 64, num_layers: int = 5, kernel_size: int = 3,
                 first_kernel_size: int = 7):
        super().__init__()
        if num_codes < 2 or channels < 1 or num_layers < 0 or kernel_size % 2 == 0 or first_kernel_size % 2 == 0:
            raise ConfigError(f"network: num_codes={num_codes} >= 2, channels={channels} >= 1, num_layers="
                              f"{num_layers} >= 0 and odd kernel sizes ({kernel_size}, {first_kernel_size}) required")
        self.num_codes = num_codes
        self.embed = nn.Embedding(num_codes, channels)
        self.first = MaskedConv2d(channels, channels, first_kernel_size, "A")
        self.layers = nn.ModuleList(MaskedConv2d(channels, channels, kernel_size, "B") for _ in range(num_layers))
        self.out = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, num_codes, 1))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        h = self.first(self.embed(codes).permute(0, 3, 1, 2))  # (B, C, h, w)
        for layer in self.layers:
            h = h + layer(F.relu(h))  # residual
        return self.out(h)  # (B, K, h, w)

    def log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, h, w) -> log p(codes) (B,) in nats."""
        return -F.cross_entropy(self(codes), codes, reduction="none").flatten(1).sum(1)

    def bits_per_code(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, h, w) -> (B,) negative log-likelihood in bits per code position."""
        return -self.log_prob(codes) / (codes[0].numel() * math.log(2.0))

    @torch.no_grad()
    def sample(self, n: int, grid_shape: tuple[int, int], temperature: float = 1.0) -> torch.Tensor:
        """n code grids (n, h, w), one position at a time in raster order (h*w forward passes)."""
        device = self.out[1].weight.device
        codes = torch.zeros(n, *grid_shape, dtype=torch.long, device=device)
        for i in range(grid_shape[0]):
            for j in range(grid_shape[1]):
                logits = self(codes)[:, :, i, j] / temperature  # (n, K)
                codes[:, i, j] = torch.distributions.Categorical(logits=logits).sample()
        return codes
