"""torchvision's MNIST, Fashion-MNIST and CIFAR-10 from files under a data dir (downloaded when allowed).

A data dir that holds the user's own images instead is refused, pointing at dataset=folder; nothing is
written into it."""
import logging
import os
import pickle
import shutil
from pathlib import Path
from typing import Annotated
from urllib.error import URLError

import functools

import torch

from vae_cli.checks import BOOL, INT, RESUMABLE, SPLIT, check_arguments
from vae_cli.data.images import ImageData, Split, data_root, seeded_split, split_size
from vae_cli.data.scan import has_images
from vae_cli.errors import ConfigError, DataError
from vae_cli.idx_files import IDX_FAMILY, idx_stand_in, read_idx

log = logging.getLogger("vae_cli")
BUNDLED = Path(__file__).parent.parent / "assets"  # the four official MNIST .gz files ship with the package
SUPPORTED = ("MNIST", "FashionMNIST", "CIFAR10")


def _torchvision():
    import torchvision  # only for the datasets not read here (CIFAR-10) and for downloads: ~1 s at start-up

    return torchvision


@functools.cache
def cifar10_files() -> type:
    class CIFAR10Files(_torchvision().datasets.CIFAR10):
        """torchvision's CIFAR10 that accepts its batch files when present: md5 sums guard downloads, and would
        refuse any other file in the same format (the tests write a tiny one); an unreadable batch still fails."""

        def _check_integrity(self) -> bool:
            folder = Path(self.root) / self.base_folder
            names = [name for name, _ in self.train_list + self.test_list] + [self.meta["filename"]]
            return all((folder / name).is_file() for name in names)

        def _load_meta(self) -> None:
            with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {name: i for i, name in enumerate(self.classes)}

    return CIFAR10Files


def dataset_class(name: str) -> type:
    if name not in SUPPORTED:
        raise ConfigError(f"dataset.name={name!r} is not a dataset vae-cli reads; choose one of "
                          f"{', '.join(SUPPORTED)}, or for a folder of your own images use dataset=folder "
                          f"dataset.path=DIR")
    return cifar10_files() if name == "CIFAR10" else idx_stand_in(name)  # MNIST family: no torchvision


def torchvision_images(name: str, root: Annotated[str | None, RESUMABLE] = None, val_size: Annotated[int | float, SPLIT] = 5000,
                       split_seed: Annotated[int, INT] = 0, binarizable: Annotated[bool, BOOL] = True,
                       download: Annotated[bool, BOOL, RESUMABLE] = True) -> ImageData:
    """A torchvision image dataset (MNIST, FashionMNIST, CIFAR10); the train set is split into train/val.

    Files already under `root` are used as they are; otherwise torchvision downloads them if `download`."""
    check_arguments("dataset", torchvision_images, locals())
    cls = dataset_class(name)
    root_dir = data_root(root)
    refuse_image_folder(cls, root_dir, name)
    path = unpack_dir(cls, root_dir)
    if name == "MNIST":
        _install_bundled_mnist(path)
    if name in IDX_FAMILY and _archives_present(cls, path):  # read here, without importing torchvision
        raw = path / name / "raw"
        (train, test), num_classes = (Split(*read_idx(raw, t, _can_write(raw))) for t in (True, False)), 10
    else:
        if name in IDX_FAMILY:
            cls = getattr(_torchvision().datasets, name)  # to download
        # Archives already on disk pass torchvision's md5 check: "download" then only unpacks, never fetches.
        download = download or _archives_present(cls, path)
        (train, num_classes), (test, _) = (_load(cls, path, train, download, name) for train in (True, False))
    n_val = split_size(val_size, len(train), "dataset.val_size")
    if n_val >= len(train):
        raise ConfigError(f"dataset.val_size={val_size} must be in (0, {len(train)})")
    val, train = seeded_split(train.images, train.labels, [n_val], split_seed)
    return ImageData(name, train, val, test, num_classes, binarizable)


def refuse_image_folder(cls, root: Path, name: str) -> None:
    """A data dir holding images but no files of this dataset is the user's own folder: one line pointing at
    dataset=folder, before anything (MNIST's bundled files, a download) is written into it."""
    if _archives_present(cls, root) or _unpacked(cls, root) or not has_images(root):
        return
    raise DataError(f"data_dir={root} holds images but no {name} files: to train on your own images use "
                    f"dataset=folder dataset.path={root} (data_dir is where torchvision datasets live)")


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


def _load(cls, root: Path, train: bool, download: bool, name: str) -> tuple[Split, int]:
    try:
        ds = cls(str(root), train=train, download=download)
    except (RuntimeError, OSError, URLError, pickle.UnpicklingError, EOFError) as e:
        files = [f for f, _ in getattr(cls, "resources", [])] or [f"{cls.filename} (or its unpacked {cls.base_folder}/)"]
        folder = root / cls.__name__ / "raw" if hasattr(cls, "resources") else root
        raise DataError(
            f"{name} is not in {root} and could not be "
            f"{'downloaded' if download else 'loaded (download=false)'} ({type(e).__name__}). "
            f"Put {', '.join(files)} in {folder}, or set VAE_DATA_DIR (or data_dir=...) to a directory "
            f"that holds {name}."
        ) from None
    images = torch.as_tensor(ds.data)
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)  # -> (N, C, H, W)
    return Split(images.contiguous(), torch.as_tensor(ds.targets, dtype=torch.long)), len(ds.classes)


