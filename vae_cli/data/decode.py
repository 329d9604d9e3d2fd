"""Decoding image files into one uint8 (N, C, H, W) array, on every available core, with a progress bar.

The transform (centre `crop`, resize of the shorter side to `image_size`, centre crop to a square, greyscale or
RGB) is Pillow's; torch's DataLoader spreads the files over worker processes."""
import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageFile
from tqdm.auto import tqdm

MODES = {1: "L", 3: "RGB"}
BAD, WRONG_SIZE = 1, 2  # status codes per file; 0 = decoded


@dataclass(frozen=True)
class Transform:
    channels: int = 3
    image_size: int | None = None   # None: keep the size (every image must then have the same one)
    crop: int | None = None         # a first centre crop, e.g. CelebA's 148 px
    size: tuple[int, int] | None = None  # (H, W) expected when image_size is None

    def __call__(self, img: Image.Image) -> Image.Image:
        img = to_mode(img, MODES[self.channels])
        if self.crop:
            img = centre_crop(img, min(self.crop, img.width), min(self.crop, img.height))
        if self.image_size:
            s, short = self.image_size, min(img.size)
            img = img.resize((max(round(img.width * s / short), s), max(round(img.height * s / short), s)),
                             Image.BILINEAR)  # shorter side -> s (Pillow antialiases a downscale)
            img = centre_crop(img, s, s)
        return img

    def out_shape(self) -> tuple[int, int, int]:
        h, w = (self.image_size, self.image_size) if self.image_size else self.size
        return self.channels, h, w

    def key(self) -> dict:
        return {"channels": self.channels, "image_size": self.image_size, "crop": self.crop}


def to_mode(img: Image.Image, mode: str) -> Image.Image:
    """Greyscale, palette, RGBA, CMYK, 16-bit ... -> L or RGB; transparent pixels become white."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return img.convert(mode)


def centre_crop(img: Image.Image, w: int, h: int) -> Image.Image:
    left, top = (img.width - w) // 2, (img.height - h) // 2
    return img.crop((left, top, left + w, top + h))


class Files(torch.utils.data.Dataset):
    """files[i] -> (uint8 (C, H, W) array, status): a file Pillow cannot read, or a truncated one, is BAD."""

    def __init__(self, files: list[str], transform: Transform):
        self.files, self.transform, self.shape = files, transform, transform.out_shape()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        try:
            with Image.open(self.files[i]) as img:
                img.load()  # raises on a truncated file (ImageFile.LOAD_TRUNCATED_IMAGES is off)
                out = np.asarray(self.transform(img), dtype=np.uint8)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            return np.zeros(self.shape, np.uint8), BAD
        out = out[None] if out.ndim == 2 else out.transpose(2, 0, 1)  # (H, W[, C]) -> (C, H, W)
        if out.shape != self.shape:
            return np.zeros(self.shape, np.uint8), WRONG_SIZE
        return out, 0


def workers() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, 16)


def decode_all(files: list[str], transform: Transform, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """-> images uint8 (N, C, H, W), status int64 (N,), decoded in file order on `workers()` processes."""
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    n_workers = workers() if len(files) >= 256 else 0  # a few files: no process start-up
    loader = torch.utils.data.DataLoader(Files(files, transform), batch_size=64, num_workers=n_workers,
                                         collate_fn=_collate)
    images = torch.empty((len(files), *transform.out_shape()), dtype=torch.uint8)
    status, pos = torch.empty(len(files), dtype=torch.long), 0
    with tqdm(total=len(files), desc=desc, unit="img", dynamic_ncols=True, mininterval=1.0) as bar:
        for batch, codes in loader:
            images[pos:pos + len(batch)], status[pos:pos + len(batch)] = batch, codes
            pos += len(batch)
            bar.update(len(batch))
    return images, status


def _collate(items):
    return torch.from_numpy(np.stack([a for a, _ in items])), torch.tensor([s for _, s in items])
