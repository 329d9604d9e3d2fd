"""vae-sample modes: one small class per picture (configs/mode/*.yaml). Each maps a `Context` to named
image grids (C, H', W') in [0, 1], made with torchvision.utils.make_grid."""
from dataclasses import dataclass

import torch
from torch.distributions import Independent, Normal
from torchvision.utils import make_grid

from vae_cli.apps.prior import code_prior_images, load_code_prior
from vae_cli.errors import UserError
from vae_cli.pictures import class_grid, fixed_labels, is_conditional


@dataclass
class Context:
    model: torch.nn.Module  # in eval mode, on the device
    x: torch.Tensor  # prepared test images (N, C, H, W) on the device
    y: torch.Tensor  # test labels (N,)
    num_classes: int | None  # None or < 2: no labels to use
    ckpt: str | None = None  # the checkpoint the model came from (a VQ-VAE's code prior lies beside it)


def encode_point(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One latent per image (B, D): the posterior mean; a posterior without a mean is refused by name."""
    q = model.encode(x, y)
    try:
        return q.mean
    except NotImplementedError:
        raise UserError(f"this mode needs the posterior mean, which {type(q).__name__} does not have") from None


def decode_mean(model, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """z (N, D) -> likelihood means (N, C, H, W) in [0, 1]."""
    return model.likelihood.mean(model.decode(z, y)).float().clamp(0, 1)


def grid(images: torch.Tensor, nrow: int) -> torch.Tensor:
    return make_grid(images.float().cpu(), nrow=nrow, padding=2, pad_value=1.0)


class PriorSamples:
    """z ~ p(z) with the noise scaled by `temperature`, decoded to the likelihood mean (and sampled pixels).

    Conditional models: `label` fixes the class of every sample; without it, also a grid with one row per
    class. Categorical (gumbel) models decode random one-hots; a VQ-VAE decodes codes drawn from the
    PixelCNN prior that `vae-prior` saved beside its checkpoint."""

    def __init__(self, num: int = 64, nrow: int = 8, temperature: float = 1.0, sample_pixels: bool = False,
                 label: int | None = None):
        if num < 1 or nrow < 1 or not temperature > 0:
            raise UserError(f"mode=prior: num={num} and nrow={nrow} must be >= 1, temperature={temperature} > 0")
        self.num, self.nrow, self.temperature, self.sample_pixels = num, nrow, temperature, sample_pixels
        self.label = label

    def prior(self, model):
        p = model.prior_dist()
        if self.temperature == 1.0:
            return p
        if not (isinstance(p, Independent) and isinstance(p.base_dist, Normal)):
            raise UserError(f"mode.temperature={self.temperature} needs a Gaussian prior; this model's is "
                            f"{type(p).__name__} (use temperature=1)")
        return Independent(Normal(p.base_dist.loc, self.temperature * p.base_dist.scale), 1)

    def __call__(self, ctx: Context) -> dict[str, torch.Tensor]:
        if hasattr(ctx.model, "grid_shape"):  # VQ-VAE: codes come from the autoregressive prior of vae-prior
            return {"prior": grid(code_prior_images(ctx.model, load_code_prior(ctx.ckpt, ctx.x.device), self.num),
                                  self.nrow)}
        z = self.prior(ctx.model).sample((self.num,))  # (N, D)
        y = self.labels(ctx, len(z), z.device)
        p_x = ctx.model.decode(z, y)
        out = {"prior": grid(ctx.model.likelihood.mean(p_x).clamp(0, 1), self.nrow)}
        if self.sample_pixels:
            out["prior_pixels"] = grid(p_x.sample().clamp(0, 1), self.nrow)
        if is_conditional(ctx.model) and self.label is None:  # one row per class, the same z down each column
            out["prior_per_class"] = grid(class_grid(ctx.model, z[: self.nrow]).clamp(0, 1), self.nrow)
        return out

    def labels(self, ctx: Context, n: int, device) -> torch.Tensor:
        """`label` for every sample, else 0, 1, ..., K-1, 0, ... (ignored by unconditional models)."""
        k = max(ctx.num_classes or 1, 1)
        if self.label is not None and not (is_conditional(ctx.model) and 0 <= self.label < k):
            raise UserError(f"mode.label={self.label} needs a conditional model (model=cvae) and a class in "
                            f"[0, {k - 1}]")
        return torch.full((n,), self.label, device=device) if self.label is not None else fixed_labels(n, k, device)


class Reconstruct:
    """Test images beside their reconstructions (decoded posterior means): input, output, input, output ..."""

    def __init__(self, num: int = 32, pairs_per_row: int = 8):
        self.num, self.pairs_per_row = num, pairs_per_row

    def __call__(self, ctx: Context) -> dict[str, torch.Tensor]:
        x, y = ctx.x[: self.num], ctx.y[: self.num]
        recon = decode_mean(ctx.model, encode_point(ctx.model, x, y), y)
        pairs = torch.stack([x.float(), recon], dim=1).flatten(0, 1)  # (2N, C, H, W)
        return {"reconstruct": grid(pairs, 2 * self.pairs_per_row)}


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation, z0/z1 (B, D), t (T,) -> (B, T, D); linear where the vectors are parallel."""
    cos = torch.nn.functional.cosine_similarity(z0, z1, dim=-1).clamp(-1, 1)[:, None, None]  # (B, 1, 1)
    omega = torch.acos(cos)
    t = t[None, :, None]
    so = torch.sin(omega)
    parallel = so.abs() < 1e-6
    w0 = torch.where(parallel, 1 - t, torch.sin((1 - t) * omega) / torch.where(parallel, 1, so))
    w1 = torch.where(parallel, t, torch.sin(t * omega) / torch.where(parallel, 1, so))
    return w0 * z0[:, None] + w1 * z1[:, None]


def lerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = t[None, :, None]
    return (1 - t) * z0[:, None] + t * z1[:, None]  # (B, T, D)


class Interpolate:
    """Between pairs of test images: one row per pair, [x_a, `steps` decoded latents, x_b]; linear and slerp."""

    def __init__(self, pairs: int = 8, steps: int = 10):
        if pairs < 1 or steps < 2:
            raise UserError(f"mode=interpolate: pairs={pairs} must be >= 1 and steps={steps} >= 2")
        self.pairs, self.steps = pairs, steps

    def __call__(self, ctx: Context) -> dict[str, torch.Tensor]:
        n = 2 * self.pairs
        if len(ctx.x) < n:
            raise UserError(f"mode=interpolate with pairs={self.pairs} needs {n} test images; there are {len(ctx.x)}")
        x, y = ctx.x[:n], ctx.y[:n]
        z = encode_point(ctx.model, x, y)
        t = torch.linspace(0, 1, self.steps, device=z.device)
        return {f"interpolate_{name}": self._rows(ctx, x, y, path(z[0::2], z[1::2], t))
                for name, path in (("linear", lerp), ("slerp", slerp))}

    def _rows(self, ctx: Context, x, y, z_path: torch.Tensor) -> torch.Tensor:
        b, t, _ = z_path.shape
        images = decode_mean(ctx.model, z_path.flatten(0, 1), y[0::2].repeat_interleave(t))
        images = images.view(b, t, *images.shape[1:])
        rows = torch.cat([x[0::2, None].float(), images, x[1::2, None].float()], dim=1)  # (B, T + 2, C, H, W)
        return grid(rows.flatten(0, 1), t + 2)


def kl_order(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Latent dims by decreasing mean KL over x (or, without a per-dim KL, by Var_x of the posterior mean)."""
    kl = model.latent_terms(x, y, 1).kl_per_dim  # (B, D) or None
    score = kl.mean(0) if kl is not None else encode_point(model, x, y).var(0)
    return torch.argsort(score, descending=True)


class Traverse:
    """One latent dim at a time over [low, high], the others at a test image's posterior mean; dims by KL."""

    def __init__(self, image: int = 0, dims: int | None = 10, steps: int = 9, low: float = -3.0, high: float = 3.0):
        self.image, self.dims, self.steps, self.low, self.high = image, dims, steps, low, high

    def __call__(self, ctx: Context) -> dict[str, torch.Tensor]:
        if not 0 <= self.image < len(ctx.x):
            raise UserError(f"mode.image={self.image} must be in [0, {len(ctx.x)}) (a test image index)")
        order = kl_order(ctx.model, ctx.x[:1000], ctx.y[:1000])[: self.dims]  # (R,)
        x, y = ctx.x[self.image : self.image + 1], ctx.y[self.image : self.image + 1]
        z = encode_point(ctx.model, x, y).repeat(len(order), self.steps, 1)  # (R, T, D)
        values = torch.linspace(self.low, self.high, self.steps, device=z.device)
        z[torch.arange(len(order)), :, order] = values  # row r varies dim order[r]
        images = decode_mean(ctx.model, z.flatten(0, 1), y.expand(z.shape[0] * self.steps))
        return {"traverse": grid(images, self.steps)}
