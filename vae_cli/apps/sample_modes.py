"""vae-sample modes: one small class per picture (configs/mode/*.yaml). Each maps a `Context` to named
image grids (C, H', W') in [0, 1], made with torchvision.utils.make_grid and drawn large and labelled
(apps/figures.py). Each declares the latent kinds it
supports (`kinds`, models/base.py); another kind is refused in one line before any data loads."""
import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from vae_cli.apps.figures import grid
from vae_cli.apps.prior import load_code_prior
from vae_cli.errors import UserError
from vae_cli.models.base import LatentKind, require_kind
from vae_cli.pictures import class_grid, fixed_labels

ALL_KINDS = frozenset(LatentKind)


@dataclass
class Context:
    model: torch.nn.Module  # a models.base.Family in eval mode, on the device
    x: torch.Tensor  # prepared test images (N, C, H, W) on the device
    y: torch.Tensor  # test labels (N,)
    num_classes: int | None  # None or < 2: no labels to use
    ckpt: str | None = None  # the checkpoint the model came from (a VQ-VAE's code prior lies beside it)

    def fitted_prior(self) -> torch.nn.Module:
        """The prior vae-prior fitted for this checkpoint's model (for families whose prior is fitted after training)."""
        return load_code_prior(self.ckpt, self.x.device, self.model)


def counts(who: str, **values) -> None:
    """Each value a positive integer, else one UserError naming it."""
    for key, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise UserError(f"{who}: mode.{key}={v!r} must be a positive integer")


def finite(who: str, **values) -> None:
    for key, v in values.items():
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise UserError(f"{who}: mode.{key}={v!r} must be a finite number")


class Mode:
    """A picture of vae-sample. `kinds`: the latent kinds it supports; `instead`: what to use otherwise."""

    name: ClassVar[str] = "?"
    kinds: ClassVar[frozenset] = ALL_KINDS
    instead: ClassVar[str] = ""

    def check(self, family: type) -> None:
        require_kind(f"mode={self.name}", self.kinds, family, self.instead)


def decode_mean(model, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Edit-space points z (N, ...) -> likelihood means (N, C, H, W) in [0, 1]."""
    return model.likelihood.mean(model.decode_point(z, y)).float().clamp(0, 1)


class PriorSamples(Mode):
    """z ~ p(z) with the noise scaled by `temperature`, decoded to the likelihood mean (and sampled pixels).

    Hierarchies sample every layer in turn (ancestral; `ancestral: false` walks down the conditional means).
    Conditional models: `label` fixes the class of every sample; without it, also a grid with one row per
    class. Categorical (gumbel) models decode random one-hots; a VQ-VAE decodes codes drawn from the
    PixelCNN prior that `vae-prior` saved beside its checkpoint."""

    name = "prior"

    def __init__(self, num: int = 64, nrow: int = 8, temperature: float = 1.0, sample_pixels: bool = False,
                 label: int | None = None, ancestral: bool = True):
        counts("mode=prior", num=num, nrow=nrow)
        finite("mode=prior", temperature=temperature)
        if not 0 < temperature <= 100:
            raise UserError(f"mode=prior: mode.temperature={temperature} must be in (0, 100] (1 = the prior itself)")
        self.num, self.nrow, self.temperature, self.sample_pixels = num, nrow, temperature, sample_pixels
        self.label, self.ancestral = label, ancestral

    def __call__(self, ctx: Context) -> dict[str, torch.Tensor]:
        model = ctx.model
        z = model.sample_latents(self.num, self.temperature, ctx.fitted_prior)  # (N, ...)
        y = self.labels(ctx, len(z), z.device)
        p_x = model.generate(z, y, self.ancestral, self.temperature)
        out = {"prior": grid(model.likelihood.mean(p_x).clamp(0, 1), self.nrow)}
        if self.sample_pixels:
            out["prior_pixels"] = grid(p_x.sample().clamp(0, 1), self.nrow)
        if model.conditional and self.label is None:  # one row per class, the same z down each column
            out["prior_per_class"] = grid(class_grid(model, z[: self.nrow]).clamp(0, 1), self.nrow,
                                          row_labels=[f"class {k}" for k in range(model.condition.num_classes)])
        return out

    def labels(self, ctx: Context, n: int, device) -> torch.Tensor:
        """`label` for every sample, else 0, 1, ..., K-1, 0, ... (ignored by unconditional models)."""
        k = max(ctx.num_classes or 1, 1)
        if self.label is not None and not (ctx.model.conditional and 0 <= self.label < k):
            raise UserError(f"mode.label={self.label} needs a conditional model (model=cvae) and a class in "
                            f"[0, {k - 1}]")
        return torch.full((n,), self.label, device=device) if self.label is not None else fixed_labels(n, k, device)


class Reconstruct(Mode):
    """Test images beside their reconstructions (the model's point estimate decoded; VQ-VAE: the quantized
    encoding): input, output, input, output ..."""

    name = "reconstruct"

    def __init__(self, num: int = 32, pairs_per_row: int = 8):
        counts("mode=reconstruct", num=num, pairs_per_row=pairs_per_row)
        self.num, self.pairs_per_row = num, pairs_per_row

    def __call__(self, ctx: Context) -> dict[str, torch.Tensor]:
        x, y = ctx.x[: self.num], ctx.y[: self.num]
        recon = ctx.model.likelihood.mean(ctx.model(x, y)).float().clamp(0, 1)
        pairs = torch.stack([x.float(), recon], dim=1).flatten(0, 1)  # (2N, C, H, W)
        columns = ["input", "recon."] * min(self.pairs_per_row, len(x))
        return {"reconstruct": grid(pairs, 2 * self.pairs_per_row, col_labels=columns)}


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


class Interpolate(Mode):
    """Between pairs of test images: one row per pair, [x_a, `steps` decoded points, x_b]; linear and slerp,
    in the family's edit space (Gaussian: z; gumbel: logits; hierarchical: the top layer; VQ-VAE: z_e)."""

    name = "interpolate"

    def __init__(self, pairs: int = 8, steps: int = 10):
        counts("mode=interpolate", pairs=pairs, steps=steps)
        if steps < 2:
            raise UserError(f"mode=interpolate: mode.steps={steps} must be >= 2 (both ends)")
        self.pairs, self.steps = pairs, steps

    def __call__(self, ctx: Context) -> dict[str, torch.Tensor]:
        n = 2 * self.pairs
        if len(ctx.x) < n:
            raise UserError(f"mode=interpolate with pairs={self.pairs} needs {n} test images; there are {len(ctx.x)}")
        x, y = ctx.x[:n], ctx.y[:n]
        z = ctx.model.encode_point(x, y)  # (2P, ...)
        flat = z.flatten(1)
        t = torch.linspace(0, 1, self.steps, device=z.device)
        return {f"interpolate_{name}": self._rows(ctx, x, y, path(flat[0::2], flat[1::2], t), z.shape[1:])
                for name, path in (("linear", lerp), ("slerp", slerp))}

    def _rows(self, ctx: Context, x, y, z_path: torch.Tensor, point_shape) -> torch.Tensor:
        b, t, _ = z_path.shape
        images = decode_mean(ctx.model, z_path.reshape(b * t, *point_shape), y[0::2].repeat_interleave(t))
        images = images.view(b, t, *images.shape[1:])
        rows = torch.cat([x[0::2, None].float(), images, x[1::2, None].float()], dim=1)  # (B, T + 2, C, H, W)
        return grid(rows.flatten(0, 1), t + 2, col_labels=["x_a", *(f"t={v:.2f}" for v in torch.linspace(0, 1, t)),
                                                             "x_b"])
