"""The base every objective shares: which model method it calls, the step-dependent knobs, the input checks.

Variants override `loss` (and `model_terms` when they call another model method). The knobs are
computed from the step alone: an int step gives floats (logging, validation), a 0-dim int64 step tensor
gives device tensors (the training step, which may be captured once as a CUDA graph and replayed).
"""
from typing import Annotated, ClassVar

import torch

from vae_cli.checks import POSITIVE_INT, check_arguments
from vae_cli.models.base import DensityFamily
from vae_cli.schedules import Weight


class Objective:
    """loss(model terms, knobs) per example, in nats; `weight` is beta x schedule (None: no regularizer weight)."""

    requires: ClassVar[type] = DensityFamily  # the family contract whose method `model_terms` calls
    latent_kinds: ClassVar[frozenset | None] = None  # the latent kinds it fits; None: every kind of `requires`
    bf16 = True  # trains under bf16 autocast to fp32's validation ELBO (docs/performance.md); False: refused

    def __init__(self, weight: Weight | None = None, num_samples: Annotated[int, POSITIVE_INT] = 1):
        check_arguments("objective", Objective, locals())
        self.weight, self.num_samples = weight, num_samples

    def knobs(self, step) -> dict:
        """The step-dependent settings (beta, temperature ...): floats for an int step, tensors for a tensor."""
        return {} if self.weight is None else {"beta": self.weight(step)}

    def model_terms(self, model, x: torch.Tensor, y: torch.Tensor | None, knobs: dict):
        """The one call into the model (DensityFamily.latent_terms, models/base.py)."""
        return model.latent_terms(x, y, self.num_samples, **self.model_kwargs(knobs))

    def model_kwargs(self, knobs: dict) -> dict:
        return {}

    def loss(self, t, knobs: dict, x: torch.Tensor, model) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def __call__(self, model, x: torch.Tensor, step, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """x (B, C, H, W) prepared data, step an int or a 0-dim step tensor, y (B,) labels -> named terms."""
        knobs = self.knobs(step)
        return self.loss(self.model_terms(model, x, y, knobs), knobs, x, model)
