"""Test-only fault injection. Not a config option: tests select it with objective._target_=... overrides."""
import torch

from vae_cli.objectives.elbo import Objective


class NonFiniteAt(Objective):
    """The ELBO objective, with `term` ("distortion" or "rate") made NaN for the examples of the listed steps."""

    def __init__(self, nan_steps: list[int] = (), term: str = "distortion", **kwargs):
        super().__init__(**kwargs)
        self.nan_steps, self.term = set(nan_steps), term

    def __call__(self, model, x, step, y=None):
        terms = super().__call__(model, x, step, y)
        if step in self.nan_steps and torch.is_grad_enabled():  # training steps only, never validation
            bad = terms[self.term] * torch.nan
            terms["loss"] = terms["loss"] + bad  # NaN flows into the loss and every gradient
            terms[self.term] = bad
        return terms
