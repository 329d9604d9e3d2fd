"""beta schedules: pure functions of the step, so a checkpoint's step fully restores them."""
import math

from vae_cli.errors import ConfigError


class Constant:
    def __call__(self, step: int) -> float:
        return 1.0


class LinearWarmup:
    """Rises linearly from `start` to 1 over `warmup_steps`, then stays at 1 (KL annealing, Bowman et al. 2016)."""

    def __init__(self, warmup_steps: int = 10000, start: float = 0.0):
        if warmup_steps <= 0 or not 0.0 <= start <= 1.0:
            raise ConfigError(f"schedule: warmup_steps={warmup_steps} must be > 0 and start={start} in [0, 1]")
        self.warmup_steps, self.start = warmup_steps, start

    def __call__(self, step: int) -> float:
        return min(1.0, self.start + (1.0 - self.start) * step / self.warmup_steps)


class Cyclical:
    """Fu et al. 2019: `n_cycles` cycles over `total_steps`; each rises linearly over the first `ratio` of the
    cycle, then holds at 1. `total_steps` is filled in from the run length."""

    def __init__(self, total_steps: int, n_cycles: int = 4, ratio: float = 0.5):
        if total_steps <= 0 or n_cycles <= 0 or not 0.0 < ratio <= 1.0:
            raise ConfigError(f"schedule: total_steps={total_steps}, n_cycles={n_cycles} must be > 0 "
                              f"and ratio={ratio} in (0, 1]")
        self.period = math.ceil(total_steps / n_cycles)
        if self.period < 2:  # every step would start a cycle: beta = 0 throughout
            raise ConfigError(f"schedule: n_cycles={n_cycles} cycles over {total_steps} steps leave one step per "
                              f"cycle, so beta would be 0 at every step; use n_cycles <= {total_steps // 2}")
        self.ratio = ratio

    def __call__(self, step: int) -> float:
        tau = (step % self.period) / self.period
        return min(1.0, tau / self.ratio)


class ExponentialDecay:
    """tau_t = max(minimum, start * exp(-rate * step)): the Gumbel-softmax temperature (Jang et al. 2017)."""

    def __init__(self, rate: float = 1e-4, minimum: float = 0.5, start: float = 1.0):
        if rate < 0 or not 0 < minimum <= start:
            raise ConfigError(f"temperature: rate={rate} must be >= 0 and 0 < minimum={minimum} <= start={start}")
        self.rate, self.minimum, self.start = rate, minimum, start

    def __call__(self, step: int) -> float:
        return max(self.minimum, self.start * math.exp(-self.rate * step))
