"""dataset=folder: every image under a folder (ImageFolder layout: class sub-folders are labels), decoded once
into a uint8 cache, then split train/val/test with a seed."""
import logging
from pathlib import Path
from typing import Annotated

import torch
from PIL import Image

from vae_cli.checks import RESUMABLE, SPLIT
from vae_cli.data import cache
from vae_cli.data.decode import BAD, MODES, WRONG_SIZE, Transform, decode_all
from vae_cli.data.images import ImageData, seeded_split, split_size
from vae_cli.data.scan import EXTENSIONS, list_folder
from vae_cli.errors import ConfigError, DataError

log = logging.getLogger("vae_cli")


def make_transform(channels: int, image_size: int | None, crop: int | None, first: str | None) -> Transform:
    """The transform, range-checked; with image_size null, the size every image must have is the first's."""
    if channels not in MODES:
        raise ConfigError(f"dataset.channels={channels!r} must be 1 (greyscale) or 3 (RGB)")
    for key, value in (("image_size", image_size), ("crop", crop)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"dataset.{key}={value!r} must be a positive number of pixels or null")
    size = None
    if image_size is None and first is not None:
        with Image.open(first) as img:
            w, h = (min(crop, img.width), min(crop, img.height)) if crop else img.size
        size = (h, w)
    return Transform(channels, image_size, crop, size)


def folder_images(path: Annotated[str | None, RESUMABLE], image_size: int | None = 64, crop: int | None = None, channels: int = 3,
                  val_size: Annotated[int | float, SPLIT] = 0.05, test_size: Annotated[int | float, SPLIT] = 0.05, split_seed: int = 0,
                  cache_dir: Annotated[str | None, RESUMABLE] = None) -> ImageData:
    """Every image under `path` (recursively). Class sub-folders -> labels 0..K-1 (sorted names); a flat
    folder -> one class. val_size/test_size: a count or a fraction of all images."""
    root = existing_folder(path)
    listing = list_folder(root)
    if not listing.files:
        raise DataError(f"dataset.path={root} holds no image files ({', '.join(EXTENSIONS)}), not even in "
                        f"sub-folders")
    transform = make_transform(channels, image_size, crop, listing.files[0])
    images, labels, key = decoded(root, listing, transform, cache_dir)
    n_val, n_test = (split_size(v, len(images), f"dataset.{k}") for k, v in (("val_size", val_size),
                                                                                ("test_size", test_size)))
    if n_val + n_test >= len(images):
        raise ConfigError(f"dataset.val_size={val_size} and dataset.test_size={test_size} leave no training "
                          f"image of the {len(images)} in {root}; lower them")
    val, test, train = seeded_split(images, labels, [n_val, n_test], split_seed)
    return ImageData(f"folder:{root.name}", train, val, test, max(len(listing.classes), 1), binarizable=False,
                     fingerprint=key)


def existing_folder(path: str | None) -> Path:
    if not path:
        raise ConfigError("dataset=folder needs dataset.path=DIR, the folder holding your images")
    root = Path(str(path)).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise DataError(f"dataset.path={root} {what}; give the folder that holds your images")
    return root


def decoded(root: Path, listing, transform: Transform, cache_dir: str | None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(images uint8 (N, C, H, W), labels (N,), the cache key) of the readable files: from the cache, or
    decoded and cached."""
    path = cache.cache_file(root, listing.stats, transform.key(), cache_dir)
    entry = cache.load(path)
    if entry is None:
        with cache.building(path):
            entry = cache.load(path)  # written by another start while this one waited
            if entry is None:
                entry = decode_and_save(root, listing, transform, path)
            else:
                log.info(f"{root}: {len(entry['images'])} images from the cache {path}")
    else:
        log.info(f"{root}: {len(entry['images'])} images from the cache {path}")
    warn_skipped(root, entry["skipped"])
    return entry["images"], entry["labels"], path.stem


def decode_and_save(root: Path, listing, transform: Transform, path: Path) -> dict:
    cache.check_fits(len(listing.files), transform.out_shape(), "dataset.image_size")
    entry = decode_folder(root, listing, transform)
    if cache.save(path, entry):
        stale = cache.remove_stale(path)
        gone = f"; removed {stale} older cache(s) of this folder's earlier contents" if stale else ""
        log.info(f"cached the decoded images of {root} at {path}{gone}")
    return entry


def decode_folder(root: Path, listing, transform: Transform) -> dict:
    images, status = decode_all(listing.files, transform, f"decoding {root.name}")
    wrong = (status == WRONG_SIZE).nonzero().flatten().tolist()
    if wrong:
        h, w = transform.size
        raise DataError(f"dataset.image_size=null keeps the images' size, but {listing.files[wrong[0]]} is not "
                        f"{w}x{h} like {Path(listing.files[0]).name} ({len(wrong)} differ): set dataset.image_size, "
                        f"e.g. dataset.image_size=64")
    ok = status == 0
    if not ok.any():
        raise DataError(f"dataset.path={root}: none of its {len(listing.files)} image files could be read")
    skipped = [listing.stats[i][0] for i in (status == BAD).nonzero().flatten().tolist()]
    labels = torch.tensor(listing.labels, dtype=torch.long)
    return {"images": images[ok].contiguous(), "labels": labels[ok], "classes": listing.classes,
            "skipped": skipped}


def warn_skipped(root: Path, skipped: list[str]) -> None:
    if skipped:
        names = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        log.warning(f"skipped {len(skipped)} unreadable or truncated image file(s) in {root}: {names}")
