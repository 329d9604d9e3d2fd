"""Test-only fault injection. Not a config option: tests select it with objective._target_=... overrides."""
import torch

from vae_cli.models.pixelcnn import PixelCNNPrior
from vae_cli.objectives.elbo import ELBO


class NonFiniteAt(ELBO):
    """The ELBO objective, with `term` ("distortion" or "rate") made NaN for the examples of the listed steps.

    The step may be an int or the trainer's 0-dim step tensor: the fault is chosen on the device (graph-safe)."""

    def __init__(self, nan_steps: list[int] = (), term: str = "distortion", **kwargs):
        super().__init__(**kwargs)
        self.nan_steps, self.term, self._steps = sorted(set(nan_steps)), term, {}

    def __call__(self, model, x, step, y=None):
        terms = super().__call__(model, x, step, y)
        if self.nan_steps and torch.is_grad_enabled():  # training steps only, never validation
            if x.device not in self._steps:  # made once, in an eager step before any CUDA graph capture
                self._steps[x.device] = torch.tensor(self.nan_steps, device=x.device)
            hit = torch.isin(torch.as_tensor(step, device=x.device), self._steps[x.device])
            bad = terms[self.term] * torch.where(hit, torch.nan, 0.0)  # NaN at the listed steps, else 0
            terms["loss"] = terms["loss"] + bad  # NaN flows into the loss and every gradient
            terms[self.term] = terms[self.term] + bad
        return terms


class NonFinitePrior(PixelCNNPrior):
    """vae-prior's PixelCNN, with its training NLL made NaN at the listed steps (0 = the first update; counted
    on the host, so for eager steps only)."""

    def __init__(self, nan_steps: list[int] = (), **kwargs):
        super().__init__(**kwargs)
        self.nan_steps, self.calls = set(nan_steps), 0

    def bits_per_code(self, codes: torch.Tensor) -> torch.Tensor:
        bits = super().bits_per_code(codes)
        if self.training and torch.is_grad_enabled():
            bits = bits * (torch.nan if self.calls in self.nan_steps else 1.0)
            self.calls += 1
        return bits


class Stall:
    """A vae-sample mode that says 'stalling' on stdout and then waits, so a test can signal a run mid-work.
    Not a config option: tests select it with mode._target_=faults.Stall (any mode knobs are accepted)."""

    name = "stall"

    def __init__(self, **knobs):
        self.knobs = knobs

    def check(self, family: type) -> None:
        pass

    def __call__(self, ctx) -> dict:
        import time

        print("stalling", flush=True)
        time.sleep(120)
        return {}
