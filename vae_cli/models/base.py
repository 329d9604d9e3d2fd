"""The model-family contract: what every family declares and offers, so the tools above need no guessing.

A family is an nn.Module subclass of `Family` with the parts `encoder, posterior, decoder, likelihood, prior`
(and `condition`, None unless conditional). Its parts subclass `PosteriorHead` and `Prior`. Everything a tool
may ask is either a class attribute (readable from a config's `_target_` before anything is built) or a
method below. Shapes: B examples, S samples; "edit space" is where apps move points (interpolate, traverse).
"""
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import Callable, ClassVar

import torch
import torch.nn as nn
from torch.distributions import Distribution, Independent, Normal

from vae_cli.errors import ConfigError, UserError


class LatentKind(str, Enum):
    CONTINUOUS = "continuous vector"  # z (B, D)
    CATEGORICAL = "categorical"  # one-hots (B, N, C); edit space: logits (B, N, C)
    CODE_GRID = "code grid"  # int64 codes (B, h, w); edit space: pre-quantization z_e (B, D, h, w)
    HIERARCHY = "hierarchy"  # layers z_1 (next to x) ... z_L (top); edit space: the top layer (B, D_L)


@dataclass(frozen=True)
class Metric:
    """The validation metric a run keeps its best checkpoint by: a key of the validation terms, and its direction."""

    name: str
    higher_is_better: bool

    def better(self, new: float, old: float | None) -> bool:
        return old is None or (new > old if self.higher_is_better else new < old)


@dataclass(kw_only=True)
class LatentTerms:
    """What every objective needs from a model, for S posterior samples of a batch of B examples (nats)."""

    log_px: torch.Tensor  # (S, B) log p(x | z_s)
    log_pz: torch.Tensor  # (S, B) log p(z_s)
    log_qz: torch.Tensor  # (S, B) log q(z_s | x)
    kl_per_dim: torch.Tensor | None = None  # (B, D) closed-form KL(q || p) per latent dim (all layers, bottom first)
    kl_per_layer: torch.Tensor | None = None  # (B, L) KL estimate per stochastic layer (hierarchies)
    z: torch.Tensor | None = None  # (S, B, ...) the samples scored (the top layer's for hierarchies)
    q: Distribution | None = None  # q(z | x), batch (B,) (top layer)
    p: Distribution | None = None  # p(z), batch () (top layer)


Encode = Callable[[torch.Tensor], Distribution]  # images (K, C, H, W) -> q(z | x), batch (K,)


class Prior(nn.Module):
    """p(z). ONE call signature for every prior: `prior(encode)` -> Distribution, batch ().

    `encode` is the family's posterior, for priors built from it (VampPrior); the others ignore it.
    `fill`: constructor values build.py supplies (from the data or the encoder), by name."""

    kind: ClassVar[LatentKind] = LatentKind.CONTINUOUS
    needs_posterior_density: ClassVar[bool] = False  # log p(z) evaluates q(z | u) at arbitrary z
    fill: ClassVar[tuple[str, ...]] = ()  # e.g. ("image_shape",), ("grid_shape",)

    def forward(self, encode: Encode | None = None) -> Distribution:
        raise NotImplementedError


class PosteriorHead(nn.Module):
    """q(z|x) from encoder features. `out_features`: the width the decoder reads (set by the subclass)."""

    kind: ClassVar[LatentKind] = LatentKind.CONTINUOUS
    density_anywhere: ClassVar[bool] = True  # False: log q only at its own samples (flows)
    has_mean: ClassVar[bool] = True  # False: E_q[z] has no closed form (flows)
    out_features: int


def temper(p: Distribution, temperature: float) -> Distribution:
    """A diagonal Gaussian prior with its scale times `temperature`; other priors only at temperature 1."""
    if temperature == 1.0:
        return p
    if not (isinstance(p, Independent) and isinstance(p.base_dist, Normal)):
        raise UserError(f"temperature={temperature} needs a diagonal Gaussian prior; this model's is "
                        f"{type(p).__name__} (use temperature=1)")
    return Independent(Normal(p.base_dist.loc, temperature * p.base_dist.scale), 1)


Fitted = Callable[[], nn.Module]  # loads the prior a second stage fitted for this model (vae-prior's code prior)


class Family(nn.Module, ABC):
    """The contract. Class attributes declare what a family is; methods are what tools call. A family subclasses
    `DensityFamily` (an ELBO: `latent_terms`) or `NoDensityFamily` (no density: `code_terms`).

    latent_kind   what z is (LatentKind); apps and modes declare the kinds they support
    part_kind     the kind its posterior head and prior must have (checked from configs before data loads)
    has_density   False: no ELBO; the family's objective calls `code_terms` instead of `latent_terms`
    best_metric   the validation metric a run keeps its best checkpoint by
    """

    latent_kind: ClassVar[LatentKind] = LatentKind.CONTINUOUS
    part_kind: ClassVar[LatentKind] = LatentKind.CONTINUOUS
    has_density: ClassVar[bool]
    best_metric: ClassVar[Metric]

    def __init__(self, encoder: nn.Module, posterior: nn.Module, decoder: nn.Module, likelihood: nn.Module,
                 prior: nn.Module, condition: nn.Module | None = None):
        super().__init__()
        check_parts(type(self), type(posterior), type(prior), conditional=condition is not None)
        self.encoder, self.posterior, self.decoder = encoder, posterior, decoder
        self.likelihood, self.prior, self.condition = likelihood, prior, condition

    @property
    def conditional(self) -> bool:
        return self.condition is not None

    @property
    def has_posterior_mean(self) -> bool:
        """Whether `posterior_mean` (and so `encode_point` for continuous families) exists."""
        return self.posterior.has_mean

    @property
    @abstractmethod
    def layer_dims(self) -> list[int]:
        """Latent dims per stochastic layer, bottom first; one entry for single-layer families."""

    # --- generation: z ~ p(z) in the prior's space, then p(x | z)
    def prior_dist(self) -> Distribution:
        return self.prior(self.encode)

    def sample_latents(self, n: int, temperature: float = 1.0, fitted: Fitted | None = None) -> torch.Tensor:
        """n draws from p(z) (the top layer for hierarchies), Gaussian noise scaled by `temperature`. `fitted`
        loads a prior fitted after training; families whose prior is trained with them ignore it."""
        return temper(self.prior_dist(), temperature).sample((n,))

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None, ancestral: bool = True,
                 temperature: float = 1.0) -> Distribution:
        """p(x | z) for prior draws z. Hierarchies: z_l ~ p(z_l | z_{l+1}) down to z_1 (ancestral), or the
        conditional means (ancestral=False). Single-layer families: decode(z, y)."""
        return self.decode(z, y)

    @abstractmethod
    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """p(x | z) with batch shape z's leading dims."""

    @abstractmethod
    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """q(z | x) as a Distribution (top layer for hierarchies); code grids: the codes (B, h, w)."""

    # --- one point per image, for pictures and diagnostics
    def posterior_mean(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """E_q[z | x] flattened over every layer, (B, sum_l D_l); only where `has_posterior_mean`."""
        if not self.has_posterior_mean:
            raise UserError(f"{type(self).__name__} with {type(self.posterior).__name__}: the posterior has no "
                            f"closed-form mean")
        return torch.cat(self.layer_means(x, y), dim=-1)

    def layer_means(self, x: torch.Tensor, y: torch.Tensor | None = None) -> list[torch.Tensor]:
        """E_q[z_l | x] per layer, bottom first, each (B, D_l) flattened."""
        return [self.encode(x, y).mean.flatten(1)]

    def encode_point(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """One point per image in the edit space (see LatentKind); continuous: the posterior mean."""
        if not self.has_posterior_mean:
            raise UserError(f"{type(self).__name__} with {type(self.posterior).__name__}: the posterior has no "
                            f"closed-form mean to edit; use posterior=gaussian or mixture")
        return self.encode(x, y).mean

    def decode_point(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """p(x | edit-space point z)."""
        return self.decode(z, y)

    def traverse(self, point: torch.Tensor, dims: torch.Tensor, values: torch.Tensor,
                 y: torch.Tensor | None = None) -> tuple[Distribution, int]:
        """Edit-space point (D,), R dims, T values -> (p(x | row r, column t), batch (R*T,); T): row r is the point
        with dim dims[r] set to each value in turn."""
        z = point.repeat(len(dims), len(values), 1)  # (R, T, D)
        z[torch.arange(len(dims)), :, dims] = values.to(z.dtype)
        return self.decode_point(z.flatten(0, 1), None if y is None else y.expand(z.shape[0] * len(values))), \
            len(values)

    def edit_grid(self, size: int) -> torch.Tensor | None:
        """A size x size grid of edit-space points at standard-normal quantiles in (0.05, 0.95)^2, top row = high
        z_2, (size^2, 2), when the edit space is a 2-D Gaussian one; else None."""
        if self.layer_dims[-1] != 2:
            return None
        q = Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, size))
        z2, z1 = torch.meshgrid(q.flip(0), q, indexing="ij")
        return torch.stack([z1, z2], dim=-1).flatten(0, 1)

    def split_layers(self, per_dim: torch.Tensor) -> list[torch.Tensor]:
        """(..., sum_l D_l) -> per-layer views [(..., D_1), ..., (..., D_L)], bottom first."""
        return list(per_dim.split(self.layer_dims, dim=-1))


class DensityFamily(Family):
    """A family with a density: `latent_terms` scores posterior samples under likelihood, prior and posterior."""

    has_density = True
    best_metric = Metric("elbo", higher_is_better=True)

    @abstractmethod
    def latent_terms(self, x: torch.Tensor, y: torch.Tensor | None = None, num_samples: int = 1,
                     **knobs) -> LatentTerms:
        """S samples of q(z | x) for a batch of B images scored in nats (LatentTerms). `knobs`: what the objective
        hands on from the step (Gumbel-softmax: temperature)."""


@dataclass(kw_only=True)
class CodeTerms:
    """What a family without a density gives its objective for a batch of B images (nats where not named)."""

    log_px: torch.Tensor  # (B,) log p(x | the quantized encoding), with the straight-through gradient
    codes: torch.Tensor  # (B, h, w) int64
    codebook_loss: torch.Tensor  # (B,) squared distances
    commitment: torch.Tensor  # (B,) squared distances
    num_codes: int


class NoDensityFamily(Family):
    """A declared "no density" (VQ-VAE): no ELBO, so no `latent_terms`; `code_terms` instead, and a prior over
    codes fitted after training (vae-prior), which `sample_latents` draws from."""

    has_density = False
    best_metric = Metric("loss", higher_is_better=False)

    @abstractmethod
    def code_terms(self, x: torch.Tensor) -> CodeTerms:
        """The quantization of a batch (B, C, H, W) and log p(x | z_q)."""

    def edit_grid(self, size: int) -> None:
        return None  # the edit space is the pre-quantization grid: no prior quantiles


def family_label(cls: type) -> str:
    return f"{cls.__name__} ({cls.latent_kind.value} latents)"


def check_parts(family: type, posterior: type, prior: type, names: dict | None = None,
                conditional: bool = False) -> None:
    """Refuse a posterior head or prior of another latent kind, from class declarations alone. conditional: the
    model has a label `condition`, so q(z|x, y) cannot be called on a prior's label-free pseudo-inputs."""
    names = names or {}
    for group, part, base in (("posterior", posterior, PosteriorHead), ("prior", prior, Prior)):
        if not issubclass(part, base):
            raise ConfigError(f"{group}={names.get(group, part.__name__)} is not a {base.__name__} (models/base.py)")
        kind = part.kind
        if kind != family.part_kind:
            raise ConfigError(f"{group}={names.get(group, part.__name__)} ({kind.value} latents) does not fit "
                              f"{family_label(family)}{_model(names)}; {_fix(kind, family)}")
    if prior.needs_posterior_density and not posterior.density_anywhere:
        raise ConfigError(f"prior={names.get('prior', prior.__name__)} evaluates q(z|x) at arbitrary z, which "
                          f"posterior={names.get('posterior', posterior.__name__)} (a flow) cannot: use "
                          f"posterior=gaussian or mixture")
    if prior.needs_posterior_density and conditional:
        raise ConfigError(f"prior={names.get('prior', prior.__name__)} evaluates q(z|u) at label-free pseudo-inputs "
                          f"u, but the conditional posterior q(z|x, y){_model(names)} needs a label for each: use "
                          f"prior=standard_normal or prior=mixture, or an unconditional model (model=mlp, conv)")


def _model(names: dict) -> str:
    return f" (model={names['model']})" if names.get("model") else ""


def _fix(kind: LatentKind, family: type) -> str:
    """What to do when a part of `kind` does not fit `family` (a continuous part: the family is discrete)."""
    return {LatentKind.CATEGORICAL: "categorical latents need model=gumbel (its preset picks the parts)",
            LatentKind.CODE_GRID: "code grids need model=vqvae (its preset picks the parts)"}.get(
        kind, f"leave posterior= and prior= out ({family.__name__}'s model preset picks its own), or use a "
              f"continuous-latent model (model=mlp, conv, ladder, ...) for this part")


def check_objective_kind(family: type, objective: type, names: dict | None = None) -> None:
    """An objective declares the family contract it calls (`requires`: DensityFamily or NoDensityFamily) and,
    optionally, the latent kinds it fits (`latent_kinds`, None: every kind)."""
    names = names or {}
    kinds = objective.latent_kinds
    if (kinds is not None and family.latent_kind not in kinds) or not issubclass(family, objective.requires):
        obj = names.get("objective", objective.__name__)
        raise ConfigError(f"objective={obj} does not apply to {family_label(family)}{_model(names)}; leave "
                          f"objective to the model preset (model=vqvae picks objective=vq, model=gumbel "
                          f"objective=gumbel)")


def require_kind(who: str, supported: frozenset, model_cls: type, instead: str) -> None:
    """One UserError line when `model_cls` is of a kind `who` (an app or a mode) does not support."""
    if model_cls.latent_kind not in supported:
        raise UserError(f"{who} does not apply to {family_label(model_cls)}; {instead}")
