"""Datasets as uint8 tensors on the training device, and shuffled index batches drawn there.

No per-sample Python in the hot loop: a batch is `images[idx]`, then the likelihood's `prepare`
(dynamic binarization, uniform dequantization or scaling) runs on the whole batch on the device.
Sources: torchvision datasets (torchvision_sets), a folder of the user's own images (folder), CelebA
(celeba) and synthetic images (fake); decoded folders are cached as uint8 (cache).
"""
from vae_cli.data.batches import IndexBatches, prepare_fixed
from vae_cli.data.celeba import celeba_images
from vae_cli.data.fake import fake_images
from vae_cli.data.folder import folder_images
from vae_cli.data.images import ImageData, Split, data_root
from vae_cli.data.torchvision_sets import _install_bundled_mnist, torchvision_images, unpack_dir

__all__ = ["ImageData", "Split", "IndexBatches", "prepare_fixed", "data_root", "torchvision_images",
           "fake_images", "folder_images", "celeba_images", "unpack_dir", "_install_bundled_mnist"]
