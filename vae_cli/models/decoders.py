"""Decoders: latents (N, D) -> likelihood parameters (N, out_channels, H, W)."""
from math import prod
from typing import Annotated

import torch
import torch.nn as nn

from vae_cli.checks import SIZES, check_arguments
from vae_cli.models.layers import act_layer, auto_channels, check_halvable, conv_stages, mlp


class MLPDecoder(nn.Module):
    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], out_channels: int,
                 hidden_sizes: Annotated[list[int], SIZES] = (256, 512), activation: str = "ReLU"):
        check_arguments("model.decoder", MLPDecoder, locals())
        super().__init__()
        _, h, w = image_shape
        self.out_shape = (out_channels, h, w)
        self.net = mlp([latent_dim, *hidden_sizes, prod(self.out_shape)], activation, final_activation=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.out_shape)  # (N, D) -> (N, P*C, H, W)


class ConvDecoder(nn.Module):
    """One dense layer, then stride-2 4x4 transposed convs (each doubles H and W). channels=None: the
    encoder's automatic stages in reverse (see ConvEncoder)."""

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], out_channels: int,
                 channels: list[int] | None = None, hidden: int = 256, activation: str = "ReLU",
                 base_channels: int = 32, max_channels: int = 256):
        super().__init__()
        if channels is None:
            channels = auto_channels(conv_stages(image_shape, "model=conv"), base_channels, max_channels)[::-1]
        h, w = check_halvable(image_shape, len(channels), "model=conv")
        self.start_shape = (channels[0], h, w)
        sizes = [*channels, out_channels]
        ups: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            ups.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
            if i < len(sizes) - 2:
                ups.append(act_layer(activation))
        self.dense = nn.Sequential(nn.Linear(latent_dim, hidden), act_layer(activation),
                                   nn.Linear(hidden, prod(self.start_shape)), act_layer(activation))
        self.ups = nn.Sequential(*ups)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.ups(self.dense(z).view(-1, *self.start_shape))  # (N, D) -> (N, P*C, H, W)

