"""vae-sample modes that use the labels or the geometry of the latent space: arithmetic and latent_map."""
import io

import torch
from torchvision.transforms.functional import pil_to_tensor

from vae_cli.errors import UserError
from vae_cli.apps.sample_modes import Context, decode_mean, encode_point, grid


def class_indices(ctx: Context, label: int, who: str) -> torch.Tensor:
    if not ctx.num_classes or ctx.num_classes < 2:
        raise UserError(f"{who} needs a labelled dataset; this checkpoint's dataset has no classes")
    if not 0 <= label < ctx.num_classes:
        raise UserError(f"{who}: class {label} is not a label of this dataset (0 .. {ctx.num_classes - 1})")
    idx = torch.nonzero(ctx.y == label).flatten()
    if len(idx) == 0:
        raise UserError(f"{who}: no test image has label {label}")
    return idx


class Arithmetic:
    """Latent arithmetic: v = mean posterior of class `a` minus that of class `b`, added with weights `scales`
    to `num` test images of class `target`. Row: [input, decode(z + s v) for s in scales]."""

    def __init__(self, a: int = 9, b: int = 4, target: int = 7, num: int = 8,
                 scales: list[float] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)):
        self.a, self.b, self.target, self.num, self.scales = a, b, target, num, list(scales)

    @torch.no_grad()
    def class_mean(self, ctx: Context, label: int) -> torch.Tensor:
        idx = class_indices(ctx, label, "mode=arithmetic")[:2000]
        return encode_point(ctx.model, ctx.x[idx], ctx.y[idx]).mean(0)  # (D,)

    def __call__(self, ctx: Context) -> dict[str, torch.Tensor]:
        v = self.class_mean(ctx, self.a) - self.class_mean(ctx, self.b)  # (D,)
        idx = class_indices(ctx, self.target, "mode=arithmetic")[: self.num]
        x, y = ctx.x[idx], ctx.y[idx]
        z = encode_point(ctx.model, x, y)  # (R, D)
        s = torch.tensor(self.scales, device=z.device)
        shifted = z[:, None] + s[None, :, None] * v  # (R, S, D)
        images = decode_mean(ctx.model, shifted.flatten(0, 1), y.repeat_interleave(len(self.scales)))
        rows = torch.cat([x[:, None].float(), images.view(len(idx), len(self.scales), *x.shape[1:])], dim=1)
        return {f"arithmetic_{self.a}-{self.b}+{self.target}": grid(rows.flatten(0, 1), len(self.scales) + 1)}


class LatentMap:
    """2-D latents: the decoded manifold over a grid of prior quantiles (Kingma & Welling 2014, fig. 4).
    Any latent size >= 2: a scatter of test posterior means coloured by label (PCA when latent_dim > 2)."""

    def __init__(self, grid_size: int = 20, num_points: int = 5000):
        self.grid_size, self.num_points = grid_size, num_points

    def __call__(self, ctx: Context) -> dict[str, torch.Tensor]:
        x, y = ctx.x[: self.num_points], ctx.y[: self.num_points]
        z = torch.cat([encode_point(ctx.model, xb, yb) for xb, yb in zip(x.split(1000), y.split(1000))])
        if z.shape[1] < 2:
            raise UserError(f"mode=latent_map needs latent_dim >= 2; this model has latent_dim={z.shape[1]}")
        out = {"latent_scatter": scatter_image(project_2d(z), y, z.shape[1])}
        if z.shape[1] == 2:
            out["latent_manifold"] = self.manifold(ctx)
        return out

    def manifold(self, ctx: Context) -> torch.Tensor:
        """Decoded z on a grid of standard-normal quantiles in (0.05, 0.95)^2; top row = high z_2."""
        p = torch.linspace(0.05, 0.95, self.grid_size)
        q = torch.distributions.Normal(0.0, 1.0).icdf(p)
        z2, z1 = torch.meshgrid(q.flip(0), q, indexing="ij")
        z = torch.stack([z1, z2], dim=-1).flatten(0, 1).to(ctx.x.device)  # (G*G, 2)
        y = torch.zeros(len(z), dtype=torch.long, device=z.device)
        return grid(decode_mean(ctx.model, z, y), self.grid_size)


def project_2d(z: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, 2): the latents themselves for D = 2, else their first two principal components."""
    if z.shape[1] == 2:
        return z.float().cpu()
    centred = (z - z.mean(0)).float().cpu()
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return centred @ v[:2].T


def scatter_image(points: torch.Tensor, labels: torch.Tensor, latent_dim: int) -> torch.Tensor:
    """A matplotlib scatter rendered to an image tensor (3, H, W) in [0, 1]."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from PIL import Image
    except ImportError:
        raise UserError("mode=latent_map draws its scatter with matplotlib: pip install 'vae-cli[plot]'") from None
    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    sc = ax.scatter(points[:, 0], points[:, 1], c=labels.cpu(), cmap="tab10", s=3, alpha=0.7)
    fig.colorbar(sc, ax=ax, label="label")
    axis = ("z_1", "z_2") if latent_dim == 2 else ("PC 1", "PC 2")
    ax.set(xlabel=axis[0], ylabel=axis[1], title=f"test posterior means (latent_dim={latent_dim})")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    buf.seek(0)
    return pil_to_tensor(Image.open(buf).convert("RGB")).float() / 255.0
