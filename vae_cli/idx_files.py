"""The MNIST family's idx files (MNIST, Fashion-MNIST, KMNIST), read without torchvision.

torchvision's import costs about as much as `import torch` (it pulls in torch._dynamo), which every training
start paid only to parse four files; the files and their layout are torchvision's, unchanged.
"""
import gzip
import io
import os
from pathlib import Path

import torch

from vae_cli.errors import DataError

IDX_FAMILY = ("MNIST", "FashionMNIST", "KMNIST")  # torchvision datasets stored as four idx files
IDX_FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def idx_stand_in(name: str) -> type:
    """What unpack_dir and _archives_present read of torchvision's MNIST-family class: its name, its files
    and its classes."""
    files = [(f"{stem}.gz", None) for pair in IDX_FILES.values() for stem in pair]
    return type(name, (), {"resources": files, "classes": list(range(10))})


def read_idx(raw: Path, train: bool, writable: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The train or test images (N, 1, H, W) uint8 and labels (N,) int64 from the idx files in `raw` (unpacked,
    else their .gz, unpacked beside it once when `writable`, as torchvision does)."""
    images, labels = (_read_idx(raw, stem, writable) for stem in IDX_FILES[train])
    return images.unsqueeze(1).contiguous(), labels.long()


def _read_idx(raw: Path, stem: str, writable: bool) -> torch.Tensor:
    path = raw / stem
    if path.exists():
        with open(path, "rb") as f:
            return _idx_tensor(path, f)
    data = gzip.decompress((raw / f"{stem}.gz").read_bytes())
    if writable:
        tmp = path.with_name(f".{stem}.{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # atomic: parallel sweep jobs never see half a file
    return _idx_tensor(path, io.BytesIO(data))


def _idx_tensor(path: Path, f) -> torch.Tensor:
    """An idx stream: magic (0, 0, 0x08 = uint8, number of dims), big-endian int32 sizes, then the bytes,
    read straight into the tensor's memory (one copy of ~47 MB, not two)."""
    magic = f.read(4)
    if magic[:3] != b"\x00\x00\x08":
        raise DataError(f"{path} is not an idx file of bytes (magic {magic.hex()}); delete it to unpack it again")
    out = torch.empty([int.from_bytes(f.read(4), "big") for _ in range(magic[3])], dtype=torch.uint8)
    if f.readinto(memoryview(out.numpy()).cast("B")) != out.numel():
        raise DataError(f"{path} is truncated; delete it to unpack it again")
    return out
