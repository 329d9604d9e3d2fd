"""Small building blocks shared by encoders and decoders."""
import torch
import torch.nn as nn

from vae_cli.errors import ConfigError


def act_layer(name: str) -> nn.Module:
    """An activation module by its torch.nn class name, e.g. "ReLU", "Tanh", "ELU"."""
    cls = getattr(nn, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(f"activation={name!r} is not a torch.nn module name (try ReLU, ELU, Tanh, GELU, SiLU)")
    return cls()


def mlp(sizes: list[int], act: str, final_activation: bool) -> nn.Sequential:
    """Linear layers sizes[0] -> ... -> sizes[-1], an activation after each (and after the last if asked)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if final_activation or i < len(sizes) - 2:
            layers.append(act_layer(act))
    return nn.Sequential(*layers)


def check_halvable(image_shape: tuple[int, int, int], num_layers: int, who: str) -> tuple[int, int]:
    """Spatial size after `num_layers` stride-2 convs; the image must divide evenly."""
    _, h, w = image_shape
    f = 2**num_layers
    if h % f or w % f:
        raise ConfigError(
            f"{who} with {num_layers} stride-2 layers needs image height and width divisible by {f}; "
            f"the dataset's images are {h}x{w} (use model=mlp or fewer channels)"
        )
    return h // f, w // f


def _stages(h: int, w: int) -> tuple[int, int, int]:
    """Halve while both sides are even and stay >= 4 px -> (stages, final h, final w)."""
    n = 0
    while h % 2 == 0 and w % 2 == 0 and min(h, w) >= 8:
        h, w, n = h // 2, w // 2, n + 1
    return n, h, w


def fits(h: int, w: int) -> bool:
    n, h, w = _stages(h, w)
    return n > 0 and max(h, w) <= 8


def conv_stages(image_shape: tuple[int, int, int], who: str) -> int:
    """How many stride-2 stages take an image down to a 4..8 px feature map (28 -> 2, 32 -> 3, 64 -> 4 ...)."""
    _, h, w = image_shape
    if not fits(h, w):
        sides = ", ".join(str(s) for s in range(8, 257) if fits(s, s))
        raise ConfigError(f"{who} cannot fit {h}x{w} images: its stride-2 stages halve each side down to 4..8 px, "
                          f"which works for sides {sides}; set dataset.image_size (e.g. 64) or use model=mlp")
    return _stages(h, w)[0]


def auto_channels(stages: int, base: int, most: int) -> list[int]:
    """Channels per stage: base, 2 base, 4 base ... capped at `most`."""
    if not (isinstance(base, int) and isinstance(most, int) and 0 < base <= most):
        raise ConfigError(f"base_channels={base!r} and max_channels={most!r} must be integers, 0 < base <= max")
    return [min(base * 2**i, most) for i in range(stages)]


def one_hot(index: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """index (...) int64 in [0, num_classes) -> (..., num_classes) one-hots of `dtype`: F.one_hot's values,
    without its host-side range check (an .item() sync off CUDA, which a captured step may not hold)."""
    out = torch.zeros(*index.shape, num_classes, dtype=dtype, device=index.device)
    return out.scatter_(-1, index.unsqueeze(-1), 1)
