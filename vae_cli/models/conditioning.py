"""Label conditioning by injection: labels (B,) -> an embedding (B, E) that the VAE concatenates to the
encoder features (q(z|x, y)) and to z before decoding (p(x|z, y))."""
import torch
import torch.nn as nn

from vae_cli.errors import ConfigError
from vae_cli.models.layers import one_hot


class LabelEmbedding(nn.Module):
    """One-hot labels (embed_dim = null) or a learned embedding of `embed_dim` numbers per class."""

    def __init__(self, num_classes: int, embed_dim: int | None = None):
        super().__init__()
        if not (isinstance(num_classes, int) and num_classes >= 2) or (embed_dim is not None and embed_dim <= 0):
            raise ConfigError(f"condition: num_classes={num_classes} must be >= 2 and embed_dim={embed_dim} "
                              f"> 0 (or null for one-hot labels)")
        self.num_classes = num_classes
        self.embedding = nn.Embedding(num_classes, embed_dim) if embed_dim else None
        self.out_features = embed_dim or num_classes

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """y (B,) int64 in [0, K) -> (B, E) float."""
        if self.embedding is not None:
            return self.embedding(y)
        return one_hot(y, self.num_classes)


def with_label(h: torch.Tensor, y: torch.Tensor | None, condition: nn.Module | None) -> torch.Tensor:
    """h (..., B, F) -> (..., B, F + E): the label embedding appended (broadcast over leading sample dims)."""
    if condition is None:
        return h
    if y is None:
        raise ValueError("this VAE is conditional (model=cvae): encode/decode need labels y (B,)")
    e = condition(y)  # (B, E)
    return torch.cat([h, e.expand(*h.shape[:-1], e.shape[-1]).to(h.dtype)], dim=-1)
