"""dataset=celeba: CelebA's aligned faces from files the user has placed, in torchvision's layout, with the
official train/val/test partition; decoded once and cached like a folder. Never downloads."""
import os
from pathlib import Path
from typing import Annotated

import torch

from vae_cli.checks import RESUMABLE
from vae_cli.data.folder import decoded, make_transform
from vae_cli.data.images import ImageData, Split, data_root
from vae_cli.data.scan import Listing, stats
from vae_cli.errors import DataError

IMAGES, PARTITION = "img_align_celeba", "list_eval_partition.txt"


def celeba_images(root: Annotated[str | None, RESUMABLE] = None, image_size: int = 64, crop: int | None = 148, channels: int = 3,
                  cache_dir: Annotated[str | None, RESUMABLE] = None) -> ImageData:
    """<root>/celeba/img_align_celeba/*.jpg split by <root>/celeba/list_eval_partition.txt (0 train, 1 val,
    2 test); no labels (one class)."""
    folder = data_root(root) / "celeba"
    listing = partition_listing(folder)
    transform = make_transform(channels, image_size, crop, listing.files[0])
    images, part, key = decoded(folder, listing, transform, cache_dir)
    train, val, test = (Split(images[part == k], torch.zeros(int((part == k).sum()), dtype=torch.long))
                        for k in range(3))
    if not (len(train) and len(val) and len(test)):
        raise DataError(f"{folder / PARTITION} leaves a split empty ({len(train)} train, {len(val)} val, "
                        f"{len(test)} test readable images)")
    return ImageData("celeba", train, val, test, 1, binarizable=False, fingerprint=key)


def missing(folder: Path) -> str:
    return (f"CelebA is not in {folder}: put the aligned JPEGs (img_align_celeba.zip, unzipped) in "
            f"{folder / IMAGES}/ and {PARTITION} in {folder}/ (from the CelebA site or its Google Drive); "
            f"or set data_dir=... to the folder that holds celeba/")


def partition_listing(folder: Path) -> Listing:
    """The images named in the partition file, in its order; labels = partition (0 train, 1 val, 2 test)."""
    if not (folder / IMAGES).is_dir() or not (folder / PARTITION).is_file():
        raise DataError(missing(folder))
    files, parts = [], []
    for line in (folder / PARTITION).read_text().split("\n"):
        if line.strip():
            name, part = line.split()
            files.append(str(folder / IMAGES / name))
            parts.append(int(part))
    absent = [Path(f) for f in files if not os.path.isfile(f)]
    if absent or not files:
        raise DataError(f"{len(absent)} of the {len(files)} images named in {folder / PARTITION} are not in "
                        f"{folder / IMAGES}/ (first: {absent[0].name if absent else 'none listed'}); "
                        + missing(folder))
    return Listing(files, parts, [], stats(folder, files))
