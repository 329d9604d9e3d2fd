"""Progress for people: a tqdm bar on a terminal, periodic log lines elsewhere (CI, SLURM), quiet in sweeps.

trainer.progress: auto = a bar when stderr is a terminal, else a log line every `progress_every_s` seconds,
and nothing in multirun jobs; true = the same, multirun jobs included; false = neither. It never reads a
device value: the ELBO it shows is the one the trainer already pulled to the host for its log line.
"""
import logging
import math
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from vae_cli.errors import ConfigError

log = logging.getLogger("vae_cli")
BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| step {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


def in_multirun() -> bool:
    """True inside a `vae-train --multirun` job (Hydra's runtime says so); False outside Hydra."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def check_setting(setting) -> str:
    """trainer.progress as 'auto', 'true' or 'false' (YAML turns true/false into booleans)."""
    text = str(setting).lower()
    if text not in ("auto", "true", "false"):
        raise ConfigError(f"trainer.progress={setting!r}; choose auto, true or false")
    return text


def choose_mode(setting, is_main: bool = True, stream=None) -> str:
    """'bar', 'lines' or 'off' for trainer.progress = auto | true | false on this process."""
    setting = check_setting(setting)
    if setting == "false" or not is_main or (setting == "auto" and in_multirun()):
        return "off"
    return "bar" if (stream or sys.stderr).isatty() else "lines"


def clock(seconds: float) -> str:
    """12:03 or 1:02:03 (h:mm:ss); '?' before any rate is known."""
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


class Progress:
    """Epoch, step, ex/s, ETA and the latest ELBO of one training run; `advance` once per step (cheap)."""

    def __init__(self, mode: str, max_steps: int, steps_per_epoch: int, start_step: int = 0,
                 every_s: float = 30.0):
        self.mode, self.max_steps, self.spe = mode, max_steps, max(steps_per_epoch, 1)
        self.start_step, self.every_s, self.latest = start_step, every_s, {}
        self.t0 = self.next_line = time.monotonic()
        self.next_line += every_s
        self.bar, self.redirect = None, None
        if mode == "bar":  # log records go through tqdm.write so they print above the bar, not through it
            self.redirect = logging_redirect_tqdm()
            self.redirect.__enter__()
            self.bar = tqdm(total=max_steps, initial=start_step, desc=self.epoch_text(start_step), unit="step",
                            bar_format=BAR_FORMAT, dynamic_ncols=True, smoothing=0.05, file=sys.stderr)

    def epoch_text(self, step: int) -> str:
        return f"epoch {max(math.ceil(step / self.spe), 1)}/{math.ceil(self.max_steps / self.spe)}"

    def advance(self, step: int) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            if step % self.spe == 1 or self.spe == 1:
                self.bar.set_description_str(self.epoch_text(step), refresh=False)
        elif self.mode == "lines" and (time.monotonic() >= self.next_line or step == self.max_steps):
            self.next_line = time.monotonic() + self.every_s
            log.info(self.line(step))

    def note(self, metrics: dict) -> None:
        """The newest host-side train metrics (elbo or loss, examples_per_sec)."""
        self.latest = metrics
        if self.bar is not None:
            self.bar.set_postfix_str(self.postfix(), refresh=False)

    def postfix(self) -> str:
        m = self.latest
        parts = [f"{m['examples_per_sec']:.0f} ex/s"] if "examples_per_sec" in m else []
        key = "elbo" if "elbo" in m else "loss"
        return "  ".join(parts + ([f"{key} {m[key]:.2f}"] if key in m else []))

    def line(self, step: int) -> str:
        elapsed = time.monotonic() - self.t0
        rate = (step - self.start_step) / elapsed if elapsed > 0 else 0.0  # steps/s, validation included
        eta = (self.max_steps - step) / rate if rate > 0 else math.inf
        return (f"progress: {self.epoch_text(step)}  step {step}/{self.max_steps} "
                f"({100 * step / self.max_steps:.0f}%)  elapsed {clock(elapsed)}  ETA {clock(eta)}  {self.postfix()}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.redirect.__exit__(None, None, None)
            self.bar = None


def start_line(run_dir: Path, device, num_params: int, max_steps: int, steps_per_epoch: int,
               batch_size: int) -> str:
    """The one line a run starts with: where it writes, on what, how big, how long."""
    epochs = max_steps / max(steps_per_epoch, 1)
    return (f"run dir {Path(run_dir).resolve()} | device {device} | {num_params:,} parameters | "
            f"{max_steps:,} steps = {epochs:.3g} epochs of {steps_per_epoch:,} batches of {batch_size}")


def open_progress(trainer, model, num_train: int, run_dir: Path, start_step: int) -> Progress:
    """Log the start line (main process only) and open the run's progress display."""
    from vae_cli.training import distributed

    loop, reporting = trainer.loop, trainer.reporting
    spe = max(num_train // loop.batch_size, 1)  # full batches per epoch, as set_run_length counts them
    if distributed.is_main():
        num_params = sum(p.numel() for p in model.parameters())
        log.info(start_line(run_dir, trainer.device, num_params, loop.max_steps, spe, loop.batch_size))
    mode = choose_mode(reporting.progress, distributed.is_main())
    return Progress(mode, loop.max_steps, spe, start_step, reporting.progress_every_s)
