"""Deterministic synthetic images for fast tests; no files needed."""
from typing import Annotated

import torch
import torch.nn.functional as F

from vae_cli.checks import BOOL, POSITIVE_INT, SHAPE, check_arguments
from vae_cli.data.images import ImageData, Split


def fake_images(num_train: Annotated[int, POSITIVE_INT] = 512, num_val: Annotated[int, POSITIVE_INT] = 128,
                num_test: Annotated[int, POSITIVE_INT] = 128, image_shape: Annotated[tuple, SHAPE] = (1, 28, 28),
                num_classes: Annotated[int, POSITIVE_INT] = 10, seed: int = 0,
                binarizable: Annotated[bool, BOOL] = True) -> ImageData:
    """Deterministic synthetic images for fast tests: one blocky template per class plus pixel noise.

    binarizable=false makes them stand in for 8-bit colour data (CIFAR-like) in compatibility checks."""
    check_arguments("dataset", fake_images, locals())
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
