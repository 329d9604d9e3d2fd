"""Model-side pictures and one-line summaries shared by the trainer, vae-prior and vae-sample.

Every model family (models/base.Family) offers `generate(z, y)` and `prior_dist()`; a conditional one also
`condition` (labels -> embedding). These functions turn that into image batches in [0, 1], shape (N, C, H, W).
"""
import torch

SUMMARY_KEYS = ("elbo", "loss", "distortion", "rate", "bits_per_dim", "commitment", "codebook_loss",
                "perplexity", "codes_used", "active_units", "beta", "temperature", "train_bits_per_code",
                "val_bits_per_code")


def val_score(val: dict) -> float:
    """Higher is better: the validation ELBO, or minus the loss for models without one (VQ-VAE)."""
    return val["elbo"] if "elbo" in val else -val["loss"]


def summary(metrics: dict) -> str:
    """'loss 91.2  elbo -91.2  ...' for whichever of the known terms are present (active units only where
    defined: a flow or a code grid has no closed-form posterior mean, and its NaN would read as a failure)."""
    shown = [k for k in SUMMARY_KEYS if k in metrics and not (k == "active_units" and metrics[k] != metrics[k])]
    return "  ".join(f"{k} {metrics[k]:.4g}" for k in shown)


def fixed_labels(n: int, num_classes: int, device) -> torch.Tensor:
    """(n,) labels 0, 1, ..., K-1, 0, 1, ...: the classes of the fixed prior samples of a conditional model."""
    return torch.arange(n, device=device) % num_classes


@torch.no_grad()
def decode_images(model, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Prior draws (N, ...) (and labels (N,)) -> the mean of p(x|z, y), (N, C, H, W) in [0, 1]; hierarchies
    sample their lower layers ancestrally."""
    return model.likelihood.mean(model.generate(z, y)).float()


@torch.no_grad()
def sample_images(model, n: int, labels: torch.Tensor | None = None) -> torch.Tensor:
    """n draws z ~ p(z) decoded to images: Gaussian z, random one-hots (gumbel), uniform codes (vqvae,
    before its prior stage). A conditional model needs `labels` (n,)."""
    if model.conditional and labels is None:
        raise ValueError("a conditional model needs labels to sample; pass labels (n,)")
    return decode_images(model, model.sample_latents(n), labels)


@torch.no_grad()
def class_grid(model, z: torch.Tensor) -> torch.Tensor:
    """One row per class: z (M, ...) decoded with each label in turn -> (K*M, C, H, W), row k = class k.

    The same z in every row, so a column holds one 'style' across the classes."""
    k, m = model.condition.num_classes, len(z)
    y = torch.arange(k, device=z.device).repeat_interleave(m)  # (K*M,) 0,0,..,1,1,..
    return decode_images(model, z.repeat(k, *([1] * (z.ndim - 1))), y)


def sample_grids(model, z: torch.Tensor, y: torch.Tensor) -> dict[str, tuple[torch.Tensor, int]]:
    """The trainer's prior pictures: tag -> (images, images per row). `z` fixed prior draws, `y` their labels."""
    grids = {"samples/prior": (decode_images(model, z, y), 8)}
    if model.conditional:
        cols = min(len(z), 8)
        grids["samples/per_class"] = (class_grid(model, z[:cols]), cols)
    return grids


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 0.0) -> torch.Tensor:
    """(N, C, H, W) -> one picture (3 or C, rows * (H + p) + p, nrow * (W + p) + p), as torchvision.utils.make_grid
    draws it (greyscale repeated to RGB, one image alone unpadded), without importing torchvision (~1 s)."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if len(images) == 1:
        return images[0]
    n, c, h, w = images.shape
    cols = min(nrow, n)
    rows = -(-n // cols)
    cells = images.new_full((rows * cols, c, h + padding, w + padding), pad_value)
    cells[:n, :, padding:, padding:] = images  # each image with the gap above and left of it
    grid = cells.view(rows, cols, c, h + padding, w + padding).permute(2, 0, 3, 1, 4)  # (C, rows, H+p, cols, W+p)
    grid = grid.reshape(c, rows * (h + padding), cols * (w + padding))
    return torch.nn.functional.pad(grid, (0, padding, 0, padding), value=pad_value)  # the gap below and right
