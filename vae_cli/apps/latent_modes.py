"""vae-sample modes that move points in the latent space: traverse, arithmetic and latent_map."""
import torch
import torch.nn.functional as F

from vae_cli.apps.figures import figure_tensor, grid, pyplot
from vae_cli.apps.sample_modes import Context, Mode, counts, decode_mean, finite
from vae_cli.errors import UserError
from vae_cli.models.base import LatentKind


def class_indices(ctx: Context, label: int, who: str) -> torch.Tensor:
    if not ctx.num_classes or ctx.num_classes < 2:
        raise UserError(f"{who} needs a labelled dataset; this checkpoint's dataset has no classes")
    if not 0 <= label < ctx.num_classes:
        raise UserError(f"{who}: class {label} is not a label of this dataset (0 .. {ctx.num_classes - 1})")
    idx = torch.nonzero(ctx.y == label).flatten()
    if len(idx) == 0:
        raise UserError(f"{who}: no test image has label {label}")
    return idx


def top_layer_order(model, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Dims of the edit space (the top layer; categorical: the latents) by decreasing mean KL over x (nats), or
    without a per-dim KL, by Var_x of the edit-space point: (order, score per dim, the score's name)."""
    kl = model.latent_terms(x, y, 1).kl_per_dim  # (B, sum_l D_l) or None
    if kl is not None:
        score, name = model.split_layers(kl)[-1].mean(0), "KL"
    else:
        score, name = model.encode_point(x, y).flatten(1).var(0), "var"
    return torch.argsort(score, descending=True), score, name


class Traverse(Mode):
    """One latent dim per row over [low, high], the others at a test image's posterior mean; rows by KL.
    Hierarchies: the top layer's dims, by that layer's KL. Categorical: one latent per row set to each class
    in turn (the others at their most probable class); rows by KL per latent."""

    name = "traverse"
    kinds = frozenset({LatentKind.CONTINUOUS, LatentKind.HIERARCHY, LatentKind.CATEGORICAL})
    instead = ("a code grid has no ordered dims to traverse: use mode=interpolate (pre-quantization space) or "
               "mode=reconstruct")

    def __init__(self, image: int = 0, dims: int | None = 10, steps: int = 9, low: float = -3.0, high: float = 3.0):
        counts("mode=traverse", steps=steps, **({} if dims is None else {"dims": dims}))
        finite("mode=traverse", low=low, high=high)
        if not low < high:
            raise UserError(f"mode=traverse: mode.low={low} must be below mode.high={high}")
        if steps < 2:  # one column would sit at mode.low: no traversal
            raise UserError(f"mode=traverse: mode.steps={steps} must be >= 2 (low and high)")
        self.image, self.dims, self.steps, self.low, self.high = image, dims, steps, low, high

    def __call__(self, ctx: Context) -> dict[str, torch.Tensor]:
        if not 0 <= self.image < len(ctx.x):
            raise UserError(f"mode.image={self.image} must be in [0, {len(ctx.x)}) (a test image index)")
        order, score, score_name = top_layer_order(ctx.model, ctx.x[:1000], ctx.y[:1000])
        order = order[: self.dims]  # (R,)
        rows = [f"z{int(j)}  {score_name} {float(score[j]):.2f}" for j in order]
        x, y = ctx.x[self.image : self.image + 1], ctx.y[self.image : self.image + 1]
        point = ctx.model.encode_point(x, y)[0]  # (D,) or categorical logits (N, C)
        values = torch.linspace(self.low, self.high, self.steps, device=point.device)
        p_x, columns = ctx.model.traverse(point, order, values, y)  # row r varies dim order[r]
        labels = ([f"class {k}" for k in range(columns)] if ctx.model.latent_kind == LatentKind.CATEGORICAL
                  else [f"{float(v):+.2g}" for v in values])  # categorical rows set each class in turn
        return {"traverse": grid(ctx.model.likelihood.mean(p_x).float().clamp(0, 1), columns, col_labels=labels,
                                 row_labels=rows)}


class Arithmetic(Mode):
    """Latent arithmetic a - b + c in the edit space: v = mean point of class `a` minus that of class `b` (each
    over up to `per_class` test images), added with weights `scales` to `num` test images of class `target` (c).
    Columns, labelled above the grid: decode(mean a), decode(mean b), the image c, decode(z_c + s v) per
    weight s; s = 1 is a - b + c (also the name of the column)."""

    name = "arithmetic"

    def __init__(self, a: int = 9, b: int = 4, target: int = 7, num: int = 8,
                 scales: list[float] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5), per_class: int = 1000):
        counts("mode=arithmetic", num=num, per_class=per_class)
        if not scales:
            raise UserError("mode=arithmetic: mode.scales is empty; give at least one weight, e.g. [0, 1]")
        finite("mode=arithmetic", **{f"scales[{i}]": s for i, s in enumerate(scales)})
        self.a, self.b, self.target, self.num, self.scales = a, b, target, num, list(scales)
        self.per_class = per_class

    @torch.no_grad()
    def class_mean(self, ctx: Context, label: int) -> torch.Tensor:
        idx = class_indices(ctx, label, "mode=arithmetic")[: self.per_class]
        return torch.cat([ctx.model.encode_point(ctx.x[i], ctx.y[i]) for i in idx.split(500)]).mean(0)  # (...)

    def columns(self, ctx: Context) -> torch.Tensor:
        """(R, 3 + S, C, H, W): [mean a, mean b, c, c + s (a - b) for s in scales] for R images c."""
        mean_a, mean_b = self.class_mean(ctx, self.a), self.class_mean(ctx, self.b)
        idx = class_indices(ctx, self.target, "mode=arithmetic")[: self.num]
        x, y = ctx.x[idx], ctx.y[idx]
        z = ctx.model.encode_point(x, y)  # (R, ...)
        v = mean_a - mean_b
        s = torch.tensor(self.scales, device=z.device).view(1, -1, *([1] * v.ndim))
        shifted = z[:, None] + s * v  # (R, S, ...)
        images = decode_mean(ctx.model, shifted.flatten(0, 1), y.repeat_interleave(len(self.scales)))
        ends = decode_mean(ctx.model, torch.stack([mean_a, mean_b]), torch.tensor([self.a, self.b], device=z.device))
        return torch.cat([ends[None].expand(len(idx), -1, -1, -1, -1), x[:, None].float(),
                          images.view(len(idx), len(self.scales), *x.shape[1:])], dim=1)

    def labels(self) -> list[str]:
        def name(s: float) -> str:
            return "a-b+c" if s == 1 else "c" if s == 0 else f"c+{s:g}(a-b)"

        return [f"a={self.a}", f"b={self.b}", f"c={self.target}", *(name(s) for s in self.scales)]

    def __call__(self, ctx: Context) -> dict[str, torch.Tensor]:
        rows = self.columns(ctx)
        picture = grid(rows.flatten(0, 1), rows.shape[1], col_labels=self.labels())
        return {f"arithmetic_{self.a}-{self.b}+{self.target}": picture}


class LatentMap(Mode):
    """A scatter of test edit-space points coloured by label (PCA when they have more than 2 numbers), and for
    a 2-D continuous (or 2-D top-layer) latent the decoded manifold over a grid of prior quantiles."""

    name = "latent_map"

    def __init__(self, grid_size: int = 20, num_points: int = 5000):
        counts("mode=latent_map", grid_size=grid_size, num_points=num_points)
        self.grid_size, self.num_points = grid_size, num_points

    def __call__(self, ctx: Context) -> dict[str, torch.Tensor]:
        x, y = ctx.x[: self.num_points], ctx.y[: self.num_points]
        z = torch.cat([ctx.model.encode_point(xb, yb).flatten(1) for xb, yb in zip(x.split(1000), y.split(1000))])
        if z.shape[1] < 2:
            raise UserError(f"mode=latent_map needs latent_dim >= 2; this model has latent_dim={z.shape[1]}")
        out = {"latent_scatter": scatter_image(project_2d(z), y, z.shape[1])}
        points = ctx.model.edit_grid(self.grid_size)  # (G*G, 2) for a 2-D Gaussian edit space, else None
        if points is not None:
            out["latent_manifold"] = self.manifold(ctx, points.to(ctx.x.device))
        return out

    def manifold(self, ctx: Context, z: torch.Tensor) -> torch.Tensor:
        """The decoded grid of edit-space points (G*G, 2), one row of the picture per grid row, drawn on z_1 and
        z_2 axes ticked with the points' values."""
        y = torch.zeros(len(z), dtype=torch.long, device=z.device)
        return figure_tensor(manifold_figure(decode_mean(ctx.model, z, y), z.cpu(), self.grid_size))


def project_2d(z: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, 2): the latents themselves for D = 2, else their first two principal components (zero
    where N < 2 leaves fewer)."""
    if z.shape[1] == 2:
        return z.float().cpu()
    centred = (z - z.mean(0)).float().cpu()
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    pcs = centred @ v[:2].T  # (N, min(N, D, 2)): fewer than 2 points have fewer components
    return F.pad(pcs, (0, 2 - pcs.shape[1]))


def scatter_image(points: torch.Tensor, labels: torch.Tensor, latent_dim: int) -> torch.Tensor:
    """A matplotlib scatter rendered to an image tensor (3, H, W) in [0, 1]."""
    plt = pyplot("mode=latent_map")
    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    sc = ax.scatter(points[:, 0], points[:, 1], c=labels.cpu(), cmap="tab10", s=3, alpha=0.7)
    fig.colorbar(sc, ax=ax, label="label")
    axis = ("z_1", "z_2") if latent_dim == 2 else ("PC 1", "PC 2")
    ax.set(xlabel=axis[0], ylabel=axis[1], title=f"test posterior means (latent_dim={latent_dim})")
    return figure_tensor(fig)


def manifold_figure(images: torch.Tensor, z: torch.Tensor, size: int):
    """images (G*G, C, h, w) decoded at the points z (G*G, 2), both row-major from the top-left -> a figure with
    the z_1 axis under the grid and the z_2 axis beside it, ticked at every few cells with their z values."""
    plt = pyplot("mode=latent_map")
    h, w = images.shape[-2:]
    picture = torch.cat([torch.cat(list(row), dim=-1) for row in images.view(size, size, *images.shape[1:])], dim=-2)
    fig, ax = plt.subplots(figsize=(max(6.0, size * w / 55), max(6.0, size * h / 55)), dpi=100)
    pixels = picture[0] if picture.shape[0] == 1 else picture.permute(1, 2, 0)  # (H, W) or (H, W, 3)
    ax.imshow(pixels.float().cpu().numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ticks = range(0, size, max(1, size // 6))
    ax.set_xticks([(i + 0.5) * w for i in ticks], [f"{float(z[i, 0]):+.2f}" for i in ticks])  # the top row's z_1
    ax.set_yticks([(i + 0.5) * h for i in ticks], [f"{float(z[i * size, 1]):+.2f}" for i in ticks])  # column 0's z_2
    ax.set(xlabel="z_1", ylabel="z_2", title=f"decoded z over the prior's 5%..95% quantiles ({size} x {size})")
    return fig
