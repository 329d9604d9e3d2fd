"""Step-dependent knobs: pure functions of the step, so a checkpoint's step fully restores them.

Each schedule has two forms of one formula: `value(step: int) -> float` (the reference, Python math) and
`tensor(step) -> Tensor` (torch ops on a 0-dim int64 step tensor, so a captured CUDA graph reads the step
from the device and the host passes nothing per step). `__call__` picks the form from the step's type.
tests/test_math.py checks both forms agree at every step.
"""
import math
from typing import Annotated

import torch

from vae_cli.checks import FRACTION, NONNEG, NONNEG_INT, OPT_POSITIVE_INT, POSITIVE_INT, UNIT, check_arguments
from vae_cli.errors import ConfigError


class Schedule:
    """A multiplier s(step) in [0, 1] (beta schedules) or > 0 (temperatures, lr factors)."""

    constant = False  # True: the same value at every step (no device ops at all)

    def value(self, step: int) -> float:
        raise NotImplementedError

    def tensor(self, step: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, step):
        if self.constant:
            return self.value(0)
        return self.tensor(step) if torch.is_tensor(step) else self.value(step)

    def start_note(self, total_steps: int, scale: float = 1.0) -> str | None:
        """What a run of `total_steps` should know about this schedule (times `scale`) at its start, or None."""
        return None


def _float(step: torch.Tensor) -> torch.Tensor:
    return step.to(torch.float32)


class Constant(Schedule):
    """beta_t = 1. warmup_steps is taken and unused, so one sweep can set schedule.warmup_steps for
    objective=elbo,kl_annealing; a value set here is named in a warning at start."""

    constant = True

    def __init__(self, warmup_steps: int | None = None):
        self.warmup_steps = warmup_steps

    def value(self, step: int) -> float:
        return 1.0

    def start_note(self, total_steps: int, scale: float = 1.0) -> str | None:
        if self.warmup_steps is not None:
            return (f"schedule.warmup_steps={self.warmup_steps} is unused: this objective keeps beta constant "
                    f"(objective=kl_annealing warms it up)")
        return None


class LinearWarmup(Schedule):
    """Rises linearly from `start` to 1 over `warmup_steps`, then stays at 1 (KL annealing, Bowman et al. 2016)."""

    def __init__(self, warmup_steps: Annotated[int, POSITIVE_INT] = 10000, start: Annotated[float, UNIT] = 0.0):
        check_arguments("schedule", LinearWarmup, locals())
        self.warmup_steps, self.start = warmup_steps, start

    def value(self, step: int) -> float:
        return min(1.0, self.start + (1.0 - self.start) * step / self.warmup_steps)

    def tensor(self, step: torch.Tensor) -> torch.Tensor:
        return (self.start + (1.0 - self.start) * _float(step) / self.warmup_steps).clamp(max=1.0)

    def start_note(self, total_steps: int, scale: float = 1.0) -> str | None:
        end = self.value(total_steps - 1)  # at the run's last update
        if end >= 1.0:
            return None
        return (f"the KL warm-up (schedule.warmup_steps={self.warmup_steps}) is longer than the run "
                f"({total_steps} steps): beta ends at {scale * end:.2f}, not {scale:g}; to reach it, e.g. "
                f"schedule.warmup_steps={max(total_steps // 2, 1)} (half the run)")


class Cyclical(Schedule):
    """Fu et al. 2019: `n_cycles` cycles over `total_steps`; each rises linearly over the first `ratio` of the
    cycle, then holds at 1. `total_steps` is filled in from the run length."""

    def __init__(self, total_steps: Annotated[int, POSITIVE_INT], n_cycles: Annotated[int, POSITIVE_INT] = 4,
                 ratio: Annotated[float, FRACTION] = 0.5):
        check_arguments("schedule", Cyclical, locals())
        self.period = math.ceil(total_steps / n_cycles)
        if self.period < 2:  # every step would start a cycle: beta = 0 throughout
            raise ConfigError(f"schedule: n_cycles={n_cycles} cycles over {total_steps} steps leave one step per "
                              f"cycle, so beta would be 0 at every step; use n_cycles <= {total_steps // 2}")
        self.ratio = ratio

    def value(self, step: int) -> float:
        tau = (step % self.period) / self.period
        return min(1.0, tau / self.ratio)

    def tensor(self, step: torch.Tensor) -> torch.Tensor:
        tau = _float(step % self.period) / self.period
        return (tau / self.ratio).clamp(max=1.0)


class ExponentialDecay(Schedule):
    """tau_t = max(minimum, start * exp(-rate * step)): the Gumbel-softmax temperature (Jang et al. 2017)."""

    def __init__(self, rate: float = 1e-4, minimum: float = 0.5, start: float = 1.0):
        if rate < 0 or not 0 < minimum <= start:
            raise ConfigError(f"temperature: rate={rate} must be >= 0 and 0 < minimum={minimum} <= start={start}")
        self.rate, self.minimum, self.start = rate, minimum, start
        self.constant = rate == 0

    def value(self, step: int) -> float:
        return max(self.minimum, self.start * math.exp(-self.rate * step))

    def tensor(self, step: torch.Tensor) -> torch.Tensor:
        return (self.start * torch.exp(-self.rate * _float(step))).clamp(min=self.minimum)


class Weight:
    """beta_t = beta * schedule(step): the one weight of the regularizer that every objective with a KL
    (or tempered log-weights) is injected with. Returns a float for an int step (and for a constant
    schedule), a 0-dim tensor for a step tensor."""

    def __init__(self, beta: Annotated[float, NONNEG] = 1.0, schedule: Schedule | None = None):
        check_arguments("objective.weight", Weight, locals())
        self.beta, self.schedule = float(beta), schedule or Constant()

    def __call__(self, step):
        return self.beta * self.schedule(step)

    def start_note(self, total_steps: int) -> str | None:
        return self.schedule.start_note(total_steps, self.beta)


class LRSchedule(Schedule):
    """lr_t = lr * factor(step) for every param group of `optimizer`, applied before each update.

    Configs are `_partial_: true`: build.py fills `total_steps`, the trainer the optimizer. On a CUDA graph
    the group's lr is a device tensor, updated in place from the step tensor; otherwise a float."""

    def __init__(self, optimizer, total_steps: int):
        if not (isinstance(total_steps, int) and total_steps > 0):
            raise ConfigError(f"lr_schedule: total_steps={total_steps} must be a positive integer")
        self.optimizer, self.total_steps = optimizer, total_steps
        self.base_lrs = [float(g["lr"]) for g in optimizer.param_groups]

    def apply(self, step) -> None:
        """Set every group's lr for the update at `step` (an int or the 0-dim step tensor)."""
        if self.constant:
            return
        factor = self(step)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            if torch.is_tensor(group["lr"]):
                group["lr"].copy_(factor * base)
            else:
                group["lr"] = base * float(factor)

    def budget_note(self, passes: float) -> str | None:
        """What a run of `passes` passes over the training set should know about this schedule, or None."""
        return None

    def state_dict(self) -> dict:
        return {"base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict) -> None:
        self.base_lrs = [float(v) for v in state["base_lrs"]]


class ConstantLR(LRSchedule):
    constant = True

    def value(self, step: int) -> float:
        return 1.0


class CosineLR(LRSchedule):
    """Linear warm-up from lr/warmup_steps to lr over `warmup_steps`, then a cosine from lr to min_factor * lr
    at the last step (Loshchilov & Hutter 2017, without restarts)."""

    def __init__(self, optimizer, total_steps: int, warmup_steps: Annotated[int, NONNEG_INT] = 0,
                 min_factor: float = 0.0):
        super().__init__(optimizer, total_steps)
        check_arguments("lr_schedule", CosineLR, locals())
        if not (isinstance(warmup_steps, int) and 0 <= warmup_steps < total_steps) or not 0 <= min_factor <= 1:
            raise ConfigError(f"lr_schedule: warmup_steps={warmup_steps} must be in [0, {total_steps}) "
                              f"(the run's steps) and min_factor={min_factor} in [0, 1]")
        self.warmup, self.min_factor = warmup_steps, float(min_factor)
        self.span = max(1, total_steps - 1 - warmup_steps)

    def value(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / self.span)
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    def tensor(self, step: torch.Tensor) -> torch.Tensor:
        s = _float(step)
        progress = ((s - self.warmup) / self.span).clamp(0.0, 1.0)
        cosine = self.min_factor + (1 - self.min_factor) * 0.5 * (1 + torch.cos(math.pi * progress))
        return torch.where(s < self.warmup, (s + 1) / max(self.warmup, 1), cosine)


class StepLR(LRSchedule):
    """lr * gamma^(step // step_size); step_size null: a quarter of the run."""

    def __init__(self, optimizer, total_steps: int, step_size: Annotated[int | None, OPT_POSITIVE_INT] = None,
                 gamma: float = 0.5):
        super().__init__(optimizer, total_steps)
        check_arguments("lr_schedule", StepLR, locals())
        self.step_size, self.gamma = step_size or max(1, total_steps // 4), float(gamma)
        if not (isinstance(self.step_size, int) and self.step_size > 0) or not 0 < self.gamma <= 1:
            raise ConfigError(f"lr_schedule: step_size={step_size} must be a positive integer and gamma={gamma} "
                              f"in (0, 1]")

    def value(self, step: int) -> float:
        return self.gamma ** (step // self.step_size)

    def tensor(self, step: torch.Tensor) -> torch.Tensor:
        return torch.pow(self.gamma, _float(step // self.step_size))


class IWAEPaperLR(LRSchedule):
    """Burda et al. 2016 (sec. 5): stage i = 0 .. stages-1 runs growth^i passes at lr * final_factor^(i/(stages-1))
    (the paper: 8 stages, 3^i passes, 1e-3 * 10^(-i/7), 3280 passes). Scaled to the run: stage i ends at the
    same fraction sum_{j<=i} 3^j / 3280 of `total_steps` as in the paper."""

    def __init__(self, optimizer, total_steps: int, stages: int = 8, growth: float = 3.0, final_factor: float = 0.1):
        super().__init__(optimizer, total_steps)
        if not (isinstance(stages, int) and stages >= 2) or not growth > 0 or not 0 < final_factor <= 1:
            raise ConfigError(f"lr_schedule: stages={stages} must be an integer >= 2, growth={growth} > 0 and "
                              f"final_factor={final_factor} in (0, 1]")
        passes = [growth**i for i in range(stages)]
        ends = [sum(passes[: i + 1]) / sum(passes) for i in range(stages - 1)]
        self.starts = [round(total_steps * f) for f in ends]  # the first step of stages 1 .. stages-1
        self.decay = final_factor ** (1 / (stages - 1))
        self.design = sum(passes)  # the passes the stages were laid out for (the paper: 3280)
        self._starts = {}  # device -> the starts as a tensor, made in an eager step before any capture

    def value(self, step: int) -> float:
        return self.decay ** sum(step >= s for s in self.starts)

    def budget_note(self, passes: float, low: float = 0.2) -> str | None:
        """A run under a tenth of the design: its first stages (the high lr) shrink to a few steps."""
        if passes >= self.design / 10:
            return None
        stage = next((i for i in range(1, len(self.starts) + 1) if self.decay**i <= low), len(self.starts))
        share = 1 - self.starts[stage - 1] / self.total_steps  # the steps from that stage on
        return (f"lr_schedule=iwae_paper lays its stages out for {self.design:g} passes over the data; this run makes "
                f"{passes:.3g}, so {share:.0%} of its steps run at lr <= {self.base_lrs[0] * self.decay**stage:.2g}. "
                f"For a short run use lr_schedule=cosine; for the paper's recipe, max_epochs={self.design:g}")

    def tensor(self, step: torch.Tensor) -> torch.Tensor:
        if step.device not in self._starts:
            self._starts[step.device] = torch.tensor(self.starts, device=step.device)
        stage = (step >= self._starts[step.device]).sum()
        return torch.pow(self.decay, _float(stage))
