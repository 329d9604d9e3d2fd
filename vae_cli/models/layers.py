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


def one_hot(index: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """index (...) int64 in [0, num_classes) -> (..., num_classes) one-hots of `dtype`: F.one_hot's values,
    without its host-side range check (an .item() sync off CUDA, which a captured step may not hold)."""
    out = torch.zeros(*index.shape, num_classes, dtype=dtype, device=index.device)
    return out.scatter_(-1, index.unsqueeze(-1), 1)
