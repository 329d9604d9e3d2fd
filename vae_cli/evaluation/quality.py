"""An offline sample-quality score: a Fréchet distance in the feature space of a small classifier.

MNIST and Fashion-MNIST use weights shipped with the package (made by scripts/train_classifier.py with a
fixed seed, checked by sha256 at load), so their distances are comparable across machines and installs.
Other datasets train one once on their training split and cache it next to the data. NOT comparable with
Inception FID: the features, their dimension and the images they see differ, so the numbers only rank
models of the same dataset evaluated by this tool.
"""
import contextlib
import hashlib
import logging
import math
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from vae_cli.data import ImageData, data_root
from vae_cli.data.cache import default_dir as image_cache_dir
from vae_cli.errors import UserError
from vae_cli.evaluation.manifold import manifold_scores

log = logging.getLogger("vae_cli")
FEATURES = 128
ASSETS = Path(__file__).resolve().parents[1] / "assets" / "classifiers"
SHIPPED = {  # dataset name -> sha256 of ASSETS/<name>.pt, as printed by scripts/train_classifier.py
    "MNIST": "591f627e9ce841799519671c8bff02a1c16a534ca49fdcc5f5df38f8acd820ef",
    "FashionMNIST": "4d8a04273fabc99eff9c0c5298d411c980874de1f283209de68561a905398487",
}


class SmallClassifier(nn.Module):
    """Two stride-2 convs and a 128-unit feature layer; images (B, C, H, W) in [0, 1]."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64 * 16, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, C, H, W) -> (B, K) logits


def cache_path(data: ImageData, root: str | None) -> Path:
    """Beside the torchvision data; for the user's own images (whose data_dir may be their folder) in the user
    cache, named by the images' fingerprint."""
    c, h, w = data.image_shape
    if data.fingerprint:
        return image_cache_dir().parent / "classifiers" / f"{data.fingerprint}-{len(data.train)}.pt"
    return data_root(root) / "vae-cli-classifiers" / f"{data.name}-{c}x{h}x{w}-{len(data.train)}.pt"


@torch.enable_grad()
def train_classifier(data: ImageData, device: torch.device, epochs: int = 2, seed: int = 0) -> SmallClassifier:
    """Adam on the training split (images / 255), full shuffled batches of 128."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = SmallClassifier(data.image_shape[0], data.num_classes).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    images, labels = data.train.images, data.train.labels
    for _ in range(epochs):
        for idx in torch.randperm(len(images), generator=g).split(128):
            x = images[idx].to(device).float() / 255.0
            loss = F.cross_entropy(net(x), labels[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def save_weights(net: SmallClassifier, path: Path) -> None:
    """The state dict in float16 (half the bytes; features move by ~1e-3 relative)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.half() for k, v in net.state_dict().items()}, path)


def load_weights(path: Path, data: ImageData) -> SmallClassifier:
    net = SmallClassifier(data.image_shape[0], data.num_classes)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))  # copies cast to float32
    return net.eval()


def shipped_classifier(data: ImageData) -> SmallClassifier | None:
    """The packaged weights for this dataset (checksum verified), or None if none ship for it."""
    path = ASSETS / f"{data.name}.pt"
    if data.name not in SHIPPED or data.image_shape != (1, 28, 28) or not path.is_file():
        return None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SHIPPED[data.name]:
        raise UserError(f"the packaged classifier {path} has sha256 {digest[:12]}..., expected "
                        f"{SHIPPED[data.name][:12]}...: reinstall vae-cli, or quality=false")
    return load_weights(path, data)


def load_or_train(data: ImageData, device: torch.device, root: str | None) -> SmallClassifier:
    """The packaged classifier for this dataset, else the cached one, training and caching it on first use. A
    cache that does not load (truncated, corrupt) counts as absent; one that cannot be written is skipped with a
    warning."""
    if (net := shipped_classifier(data)) is not None:
        return net.to(device)
    path = cache_path(data, root)
    if path.is_file():
        net = SmallClassifier(data.image_shape[0], data.num_classes)
        try:
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return net.to(device).eval()
        except Exception as e:  # noqa: BLE001 - any unreadable cache is retrained and rewritten
            log.warning(f"the sample-quality classifier cache {path} does not load ({type(e).__name__}); retraining it")
    log.info(f"training the sample-quality classifier for {data.name} once; cached at {path}")
    net = train_classifier(data, device)
    save_cache(net, path)
    acc = accuracy(net, data.test.images.float() / 255.0, data.test.labels)
    log.info(f"sample-quality classifier: test accuracy {acc:.3f}")
    return net


def save_cache(net: SmallClassifier, path: Path) -> None:
    """Atomically (a temporary file renamed over the target), so an interrupted write never leaves half a cache."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # no writable cache dir (HOME=/dev/null, a full disk): train again next time
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        log.warning(f"could not cache the sample-quality classifier at {path} ({e}); it is retrained next time")


@torch.no_grad()
def features_and_probs(net: SmallClassifier, x: torch.Tensor, batch_size: int = 1000):
    """x (N, C, H, W) in [0, 1] -> features (N, 128) float64 and class probabilities (N, K)."""
    feats, probs = [], []
    for xb in x.split(batch_size):
        f = net.features(xb.float())
        feats.append(f.double().cpu())
        probs.append(F.softmax(net.head(f), dim=-1).cpu())
    return torch.cat(feats), torch.cat(probs)


@torch.no_grad()
def accuracy(net: SmallClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    device = next(net.parameters()).device
    _, probs = features_and_probs(net, x.to(device))
    return float((probs.argmax(-1) == y.cpu()).float().mean())


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a (N, F) and b (M, F):
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2), via symmetric eigendecompositions."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T), torch.cov(b.T)
    root_a = _psd_sqrt(s_a)
    cross = torch.linalg.eigvalsh(root_a @ s_b @ root_a).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + s_a.trace() + s_b.trace() - 2 * cross)


def _psd_sqrt(s: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(s)
    return vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T


def label_entropies(probs: torch.Tensor) -> dict[str, float]:
    """Mean entropy of p(y|x) per sample (low: confident, digit-like) and entropy of the mean p(y)
    (high: all classes produced; at most log K), in nats."""
    eps = torch.finfo(probs.dtype).tiny
    conditional = -(probs * (probs + eps).log()).sum(-1).mean()
    marginal = probs.mean(0)
    return {"label_entropy": float(conditional), "marginal_label_entropy": float(-(marginal * (marginal + eps).log()).sum()),
            "max_label_entropy": math.log(probs.shape[-1])}


@torch.no_grad()
def sample_quality(model, data: ImageData, device: torch.device, root: str | None, num_samples: int) -> dict:
    """Fréchet distance, precision / recall and density / coverage (evaluation/manifold.py), all in the
    classifier's features, between test images and prior samples (likelihood means)."""
    net = load_or_train(data, device, root)
    real = data.test.images[:num_samples].to(device).float() / 255.0
    labels = data.test.labels[:num_samples].to(device)  # offered to conditional decoders; others ignore them
    z = model.prior_dist().sample((len(real),))  # (N, D)
    fake = torch.cat([model.likelihood.mean(model.generate(zc, yc)) for zc, yc in zip(z.split(1000), labels.split(1000))])
    real_f, _ = features_and_probs(net, real)
    fake_f, probs = features_and_probs(net, fake)
    return {"classifier_fd": frechet_distance(real_f, fake_f), "num_samples": len(real),
            **manifold_scores(real_f.float(), fake_f.float()),
            "classifier_test_accuracy": accuracy(net, real, data.test.labels[:num_samples]),
            **label_entropies(probs)}
