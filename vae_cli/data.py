"""Datasets as uint8 tensors on the training device, and shuffled index batches drawn there.

No per-sample Python in the hot loop: a batch is `images[idx]`, then the likelihood's `prepare`
(dynamic binarization or uniform dequantization) runs on the whole batch on the device.
"""
import logging
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.error import URLError

import torch
import torch.nn.functional as F

from vae_cli.errors import ConfigError, DataError, UserError
from vae_cli.idx_files import IDX_FAMILY, idx_stand_in, read_idx

log = logging.getLogger("vae_cli")
BUNDLED = Path(__file__).parent / "assets"  # the four official MNIST .gz files ship with the package


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

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])

    def to(self, device) -> "ImageData":
        return replace(self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device))


def data_root(root: str | None) -> Path:
    """The directory torchvision datasets live in: `root`, else $VAE_DATA_DIR, else ~/.cache/vae-cli/data."""
    root = root or os.environ.get("VAE_DATA_DIR") or Path.home() / ".cache" / "vae-cli" / "data"
    return Path(root).expanduser()


def torchvision_images(name: str, root: str | None = None, val_size: int = 5000, split_seed: int = 0,
                       binarizable: bool = True, download: bool = True) -> ImageData:
    """A torchvision image dataset (MNIST, FashionMNIST, CIFAR10); the train set is split into train/val.

    Files already under `root` are used as they are; otherwise torchvision downloads them if `download`.
    The MNIST family's idx files on disk are read here, without importing torchvision (a second at start-up)."""
    cls = idx_stand_in(name) if name in IDX_FAMILY else getattr(_torchvision().datasets, name)
    path = unpack_dir(cls, data_root(root))
    if name == "MNIST":
        _install_bundled_mnist(path)
    if name in IDX_FAMILY and _archives_present(cls, path):
        train, test = (Split(*read_idx(path / name / "raw", train, _can_write(path / name / "raw")))
                       for train in (True, False))
    else:
        cls = getattr(_torchvision().datasets, name)
        # Archives already on disk pass torchvision's md5 check: "download" then only unpacks, never fetches.
        download = download or _archives_present(cls, path)
        train, test = (_load(cls, path, train, download) for train in (True, False))
    if not 0 < val_size < len(train):
        raise ConfigError(f"dataset.val_size={val_size} must be in (0, {len(train)})")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(split_seed))
    val, train = (Split(train.images.index_select(0, i), train.labels.index_select(0, i))  # ~10x [i] on CPU
                  for i in (perm[:val_size], perm[val_size:]))
    return ImageData(name, train, val, test, len(cls.classes), binarizable)


def _torchvision():
    import torchvision  # only for datasets this module does not read itself, and for downloads

    return torchvision


def _archive_folder(cls, root: Path) -> Path:
    return root / cls.__name__ / "raw" if hasattr(cls, "resources") else root  # MNIST family / CIFAR


def _unpacked(cls, root: Path) -> bool:
    if hasattr(cls, "resources"):
        return all((root / cls.__name__ / "raw" / Path(f).stem).exists() for f, _ in cls.resources)
    return (root / cls.base_folder).exists()


def _can_write(folder: Path) -> bool:
    """Whether `folder` is writable, or can be made: its nearest existing ancestor is writable."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return os.access(folder, os.W_OK | os.X_OK)


def unpack_dir(cls, root: Path) -> Path:
    """`root` when torchvision can unpack its archives there (or finds them unpacked). A read-only data dir
    is copied (archives only) to ~/.cache/vae-cli/unpacked, where torchvision unpacks them instead."""
    if _unpacked(cls, root) or _can_write(_archive_folder(cls, root)):
        return root
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vae-cli" / "unpacked"
    try:
        target = _archive_folder(cls, cache)
        target.mkdir(parents=True, exist_ok=True)
        for src in _archive_folder(cls, root).glob("*") if _archive_folder(cls, root).is_dir() else []:
            if src.is_file() and not (target / src.name).exists():
                shutil.copyfile(src, target / src.name)
    except OSError as e:
        raise DataError(f"the data dir {root} is read-only and {cache} is not writable either ({e.strerror}): "
                        f"torchvision unpacks the archives next to them; set VAE_DATA_DIR (or data_dir=...) "
                        f"to a writable directory") from None
    log.info(f"the data dir {root} is read-only: unpacking {cls.__name__} into {cache} instead")
    return cache


def _install_bundled_mnist(root: Path) -> None:
    """Copy the bundled .gz files into root/MNIST/raw so torchvision finds them and never downloads."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for src in (BUNDLED / "MNIST" / "raw").glob("*.gz"):
        if not (raw / src.name).exists() and not (raw / src.stem).exists():
            shutil.copyfile(src, raw / src.name)


def _archives_present(cls, root: Path) -> bool:
    if hasattr(cls, "resources"):  # MNIST family: root/<Name>/raw/*.gz, or already unpacked
        raw = root / cls.__name__ / "raw"
        return all((raw / f).exists() or (raw / Path(f).stem).exists() for f, _ in cls.resources)
    return (root / cls.filename).exists() or (root / cls.base_folder).exists()  # CIFAR: one tarball


def _load(cls, root: Path, train: bool, download: bool) -> Split:
    try:
        ds = cls(str(root), train=train, download=download)
    except (RuntimeError, OSError, URLError) as e:
        files = [f for f, _ in getattr(cls, "resources", [])] or [cls.filename]
        folder = root / cls.__name__ / "raw" if hasattr(cls, "resources") else root
        raise DataError(
            f"{cls.__name__} is not in {root} and could not be "
            f"{'downloaded' if download else 'loaded (download=false)'} ({type(e).__name__}). "
            f"Put {', '.join(files)} in {folder}, or set VAE_DATA_DIR (or data_dir=...) to a directory "
            f"that holds {cls.__name__}."
        ) from None
    images = torch.as_tensor(ds.data)
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)  # -> (N, C, H, W)
    return Split(images.contiguous(), torch.as_tensor(ds.targets, dtype=torch.long))


def fake_images(num_train: int = 512, num_val: int = 128, num_test: int = 128,
                image_shape: tuple[int, int, int] = (1, 28, 28), num_classes: int = 10, seed: int = 0,
                binarizable: bool = True) -> ImageData:
    """Deterministic synthetic images for fast tests: one blocky template per class plus pixel noise.

    binarizable=false makes them stand in for 8-bit colour data (CIFAR-like) in compatibility checks."""
    g = torch.Generator().manual_seed(seed)
    c, h, w = image_shape
    templates = (torch.rand(num_classes, c, max(h // 4, 1), max(w // 4, 1), generator=g) > 0.6).float()
    templates = F.interpolate(templates, size=(h, w), mode="nearest")  # (K, C, H, W) in {0, 1}
    labels = torch.randint(num_classes, (num_train + num_val + num_test,), generator=g)
    noise = torch.rand(len(labels), c, h, w, generator=g)
    images = ((0.8 * templates[labels] + 0.2 * noise) * 255).round().to(torch.uint8)
    cuts = [0, num_train, num_train + num_val, len(labels)]
    train, val, test = (Split(images[a:b], labels[a:b]) for a, b in zip(cuts[:-1], cuts[1:]))
    return ImageData("fake", train, val, test, num_classes, binarizable)


def prepare_fixed(prepare, images: torch.Tensor, seed: int) -> torch.Tensor:
    """`prepare` (binarize/dequantize) under a fixed seed: the same noise every time, for comparable metrics."""
    devices = [images.device] if images.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return prepare(images)


class IndexBatches:
    """Shuffled index batches on `device`; an epoch is len // batch_size full batches (the rest is dropped).

    The permutation is drawn on the CPU and copied to `device` (once an epoch), so the generator's state is
    the same kind on every device: a checkpoint resumes on another device (CPU <-> CUDA) with the same order."""

    def __init__(self, num_examples: int, batch_size: int, device: torch.device, seed: int):
        if not 0 < batch_size <= num_examples:
            raise ConfigError(f"trainer.batch_size={batch_size} must be in [1, {num_examples}] "
                              f"(the number of training examples)")
        self.n, self.batch_size, self.device = num_examples, batch_size, torch.device(device)
        self.generator = torch.Generator().manual_seed(seed)  # CPU, whatever the device
        self.perm, self.pos = None, 0

    def __next__(self) -> torch.Tensor:
        if self.perm is None or self.pos + self.batch_size > self.n:
            self.perm = torch.randperm(self.n, generator=self.generator).to(self.device)
            self.pos = 0
        self.pos += self.batch_size
        return self.perm[self.pos - self.batch_size:self.pos]

    def state_dict(self) -> dict:
        return {"perm": None if self.perm is None else self.perm.cpu(), "pos": self.pos,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        generator = state["generator"].cpu()
        if generator.numel() != self.generator.get_state().numel():
            raise UserError("the checkpoint's batch order comes from a CUDA generator (an older vae-cli): resume it "
                            "with the vae-cli version and device that wrote it, or start a new run")
        self.perm = None if state["perm"] is None else state["perm"].to(self.device)
        self.pos = state["pos"]
        self.generator.set_state(generator)
