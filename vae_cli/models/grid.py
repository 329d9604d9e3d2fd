"""Spatial encoders/decoders for the VQ-VAE: images (B, C, H, W) <-> feature grids (B, D, h, w)."""
import torch
import torch.nn as nn

from vae_cli.models.layers import act_layer, check_halvable


class GridEncoder(nn.Module):
    """Stride-2 4x4 convs (each halves H and W), then a 3x3 conv; out_features = channels of the grid."""

    def __init__(self, image_shape: tuple[int, int, int], channels: list[int] = (32, 64), activation: str = "ReLU"):
        super().__init__()
        self.grid_shape = check_halvable(image_shape, len(channels), "model=vqvae")  # (h, w)
        sizes = [image_shape[0], *channels]
        convs = [layer for c_in, c_out in zip(sizes[:-1], sizes[1:])
                 for layer in (nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), act_layer(activation))]
        self.net = nn.Sequential(*convs, nn.Conv2d(channels[-1], channels[-1], 3, padding=1))
        self.out_features = channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, C, H, W) -> (B, F, h, w)


class GridDecoder(nn.Module):
    """A 3x3 conv from the code dim, then stride-2 4x4 transposed convs (each doubles H and W)."""

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], out_channels: int,
                 channels: list[int] = (64, 32), activation: str = "ReLU"):
        super().__init__()
        check_halvable(image_shape, len(channels), "model=vqvae")
        sizes = [*channels, out_channels]
        layers: list[nn.Module] = [nn.Conv2d(latent_dim, channels[0], 3, padding=1), act_layer(activation)]
        for i, (c_in, c_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
            if i < len(sizes) - 2:
                layers.append(act_layer(activation))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)  # (N, D, h, w) -> (N, P*C, H, W)
