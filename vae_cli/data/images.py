"""The in-memory form of every dataset: uint8 (N, C, H, W) images and int64 labels, split train/val/test."""
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from vae_cli.errors import ConfigError


@dataclass
class Split:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return len(self.images)

    def to(self, device) -> "Split":
        return Split(self.images.to(device), self.labels.to(device))


@dataclass
class ImageData:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    binarizable: bool  # greyscale digits/clothes: Bernoulli on dynamically binarized pixels makes sense
    fingerprint: str = ""  # own images (folder, celeba): the decoded cache's key, naming what was read

    @property
    def nbytes(self) -> int:
        return sum(s.images.numel() for s in (self.train, self.val, self.test))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])

    def to(self, device) -> "ImageData":
        return replace(self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device))


def data_root(root: str | None) -> Path:
    """The directory torchvision datasets live in: `root`, else $VAE_DATA_DIR, else ~/.cache/vae-cli/data."""
    root = root or os.environ.get("VAE_DATA_DIR") or Path.home() / ".cache" / "vae-cli" / "data"
    return Path(root).expanduser()



def split_size(value: int | float, total: int, key: str) -> int:
    """A split size given as a count (int >= 1) or a fraction of `total` (0 < f < 1) -> a count."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}={value!r} must be a count (e.g. 500) or a fraction (e.g. 0.1)")
    if isinstance(value, float) and not value.is_integer():
        if not 0 < value < 1:
            raise ConfigError(f"{key}={value} must be a fraction in (0, 1) or a count >= 1")
        return max(int(round(value * total)), 1)
    if value < 1:
        raise ConfigError(f"{key}={value} must be a count >= 1 or a fraction in (0, 1)")
    return int(value)


def seeded_split(images: torch.Tensor, labels: torch.Tensor, sizes: list[int], seed: int) -> list[Split]:
    """Shuffle (seeded) and cut into consecutive parts of `sizes`; the rest is the last part."""
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    cuts = [0]
    for size in sizes:
        cuts.append(cuts[-1] + size)
    parts = [perm[a:b] for a, b in zip(cuts[:-1], cuts[1:])] + [perm[cuts[-1]:]]
    return [Split(images.index_select(0, i), labels.index_select(0, i)) for i in parts]  # index_select: ~10x [i]
