"""Encoders: images (B, C, H, W) -> features (B, out_features); a posterior head turns features into q(z|x)."""
from math import prod
from typing import Annotated

import torch
import torch.nn as nn

from vae_cli.checks import WIDTHS, check_arguments
from vae_cli.models.layers import act_layer, auto_channels, check_halvable, conv_stages, mlp


class MLPEncoder(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], hidden_sizes: Annotated[list[int], WIDTHS] = (512, 256),
                 activation: str = "ReLU"):
        check_arguments("model.encoder", MLPEncoder, locals())
        super().__init__()
        self.net = mlp([prod(image_shape), *hidden_sizes], activation, final_activation=True)
        self.out_features = hidden_sizes[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))  # (B, C*H*W) -> (B, hidden)


class ConvEncoder(nn.Module):
    """Stride-2 4x4 convs (each halves H and W), then one dense layer. channels=None: one stage per halving
    down to a 4..8 px map (28 px: 2, 32: 3, 64: 4, 128: 5), base_channels doubling up to max_channels."""

    def __init__(self, image_shape: tuple[int, int, int], channels: list[int] | None = None, hidden: int = 256,
                 activation: str = "ReLU", base_channels: int = 32, max_channels: int = 256):
        super().__init__()
        if channels is None:
            channels = auto_channels(conv_stages(image_shape, "model=conv"), base_channels, max_channels)
        h, w = check_halvable(image_shape, len(channels), "model=conv")
        sizes = [image_shape[0], *channels]
        convs = [layer for c_in, c_out in zip(sizes[:-1], sizes[1:])
                 for layer in (nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), act_layer(activation))]
        self.net = nn.Sequential(*convs, nn.Flatten(), nn.Linear(channels[-1] * h * w, hidden), act_layer(activation))
        self.out_features = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, C, H, W) -> (B, hidden)

