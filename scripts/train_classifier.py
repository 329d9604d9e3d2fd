"""Train the sample-quality classifier of `vae-eval quality=true` for one dataset, with a fixed seed.

The MNIST and Fashion-MNIST weights shipped in vae_cli/assets/classifiers/ were made by this script:

    OMP_NUM_THREADS=1 python scripts/train_classifier.py --dataset MNIST
    OMP_NUM_THREADS=1 python scripts/train_classifier.py --dataset FashionMNIST

It prints the sha256 to paste into vae_cli/evaluation/quality.py (SHIPPED). For another dataset, write the
weights to the cache dir instead (--out; `vae-eval` also trains and caches one on first use there).
"""
import argparse
import hashlib
from pathlib import Path

import torch

from vae_cli.data import torchvision_images
from vae_cli.evaluation.quality import ASSETS, accuracy, load_weights, save_weights, train_classifier


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="MNIST", help="a torchvision dataset name: MNIST, FashionMNIST, CIFAR10")
    p.add_argument("--data-dir", default=None, help="torchvision data root (default: $VAE_DATA_DIR)")
    p.add_argument("--out", default=None, help="weights file (default: vae_cli/assets/classifiers/<dataset>.pt)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)  # bitwise-reproducible CPU kernels
    data = torchvision_images(args.dataset, args.data_dir, download=False)
    net = train_classifier(data, torch.device("cpu"), epochs=args.epochs, seed=args.seed)
    out = Path(args.out or ASSETS / f"{args.dataset}.pt")
    save_weights(net, out)
    net = load_weights(out, data)  # the float16 weights as shipped
    acc = accuracy(net, data.test.images.float() / 255.0, data.test.labels)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"{out}: {out.stat().st_size / 1024:.0f} KiB, test accuracy {acc:.4f}, sha256 {digest}")


if __name__ == "__main__":
    main()
