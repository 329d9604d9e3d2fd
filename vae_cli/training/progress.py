"""Progress for people: a tqdm bar on a terminal, periodic log lines elsewhere (CI, SLURM), quiet in sweeps.

trainer.progress: auto = a bar when stderr is a terminal, else a log line every `progress_every_s` seconds,
and nothing in multirun jobs; true = the same, multirun jobs included; false = neither. It never reads a
device value: the ELBO it shows is the one the trainer already pulled to the host for its log line.
"""
import contextlib
import logging
import math
import re
import shutil
import sys
import textwrap
import time
from pathlib import Path

from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from vae_cli.errors import ConfigError

log = logging.getLogger("vae_cli")
BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| step {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"
PERIODIC = {"periodic": True}  # log(..., extra=PERIODIC): a line that goes to train.log only while a bar is shown
MAX_COLUMNS = 120  # terminal lines are wrapped at this width (or the terminal's, if narrower)


class Throughput:
    """Examples per second over the training steps of one log window; validation time is left out."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.seen, self.spent, self.tick = 0, 0.0, time.perf_counter()

    def pause(self) -> None:
        """Before a validation, after a host sync (queued device work then counts as training)."""
        self.spent += time.perf_counter() - self.tick

    def resume(self) -> None:
        self.tick = time.perf_counter()

    def rate(self) -> float:
        """Call after a host sync: the window's examples over its training time."""
        return self.seen / max(self.spent + time.perf_counter() - self.tick, 1e-9)


class TerminalFormatter(logging.Formatter):
    """`12:03:04 message` (a level word from WARNING up), wrapped at the terminal's width; a path or command
    longer than a line stays whole, so it can still be copied."""

    def __init__(self):
        super().__init__("%(asctime)s %(message)s", datefmt="%H:%M:%S")

    def format(self, record) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            text = text.replace(" ", f" {record.levelname}: ", 1)
        width = min(shutil.get_terminal_size((MAX_COLUMNS, 24)).columns, MAX_COLUMNS)
        text = re.sub(r"(continue|with:|vae-\w+) (?=\S)", "\\1\0", text)  # keep `with: vae-train resume=...` whole
        return "\n".join(textwrap.fill(line, width, subsequent_indent=" " * 9, break_long_words=False,
                                        break_on_hyphens=False) for line in text.splitlines()).replace("\0", " ")


def console_handlers() -> list[logging.Handler]:
    """The root logger's handlers that write to a terminal (not train.log)."""
    return [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)
            and not isinstance(h, logging.FileHandler) and getattr(h.stream, "isatty", lambda: False)()]


@contextlib.contextmanager
def terminal_logging(setting, is_main: bool = True):
    """While a run shows a bar: short, wrapped log lines on the terminal (train.log keeps its format)."""
    handlers = console_handlers() if choose_mode(setting, is_main) == "bar" else []
    before = [h.formatter for h in handlers]
    for h in handlers:
        h.setFormatter(TerminalFormatter())
    try:
        yield
    finally:
        for h, formatter in zip(handlers, before):
            h.setFormatter(formatter)


def _not_periodic(record) -> bool:
    return not getattr(record, "periodic", False)


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
            for h in logging.getLogger().handlers:  # the terminal's handlers, now tqdm's: step lines stay off
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                    h.addFilter(_not_periodic)
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

    def close(self, interrupted: bool = False) -> None:
        """An interrupted bar is cleared, with what the terminal echoed after it (^C): the lines that say why
        follow. A finished bar stays."""
        if self.bar is not None:
            self.bar.leave = not interrupted
            self.bar.close()
            if interrupted:
                self.bar.fp.write("\r\x1b[K")  # erase to the end of the line
                self.bar.fp.flush()
            self.redirect.__exit__(None, None, None)
            self.bar = None


def start_line(device, num_params: int, max_steps: int, steps_per_epoch: int, batch_size: int,
               precision: str = "fp32") -> str:
    """How big the model is, where and in which precision it trains, and how long."""
    epochs = max_steps / max(steps_per_epoch, 1)
    return (f"model: {num_params:,} parameters on {device} in {precision}; {max_steps:,} steps = {epochs:.3g} "
            f"epochs of {steps_per_epoch:,} batches of {batch_size}")


def open_progress(trainer, model, num_train: int, run_dir: Path, start_step: int) -> Progress:
    """Log the start line (main process only) and open the run's progress display."""
    from vae_cli.training import distributed

    loop, reporting = trainer.loop, trainer.reporting
    spe = max(num_train // loop.batch_size, 1)  # full batches per epoch, as set_run_length counts them
    if distributed.is_main():
        num_params = sum(p.numel() for p in model.parameters())
        why = trainer.precision_why
        precision = f"{trainer.precision_used} ({why})" if why else trainer.precision_used
        log.info(start_line(trainer.device, num_params, loop.max_steps, spe, loop.batch_size, precision))
        log.info(f"run dir: {Path(run_dir).resolve()}")
    mode = choose_mode(reporting.progress, distributed.is_main())
    return Progress(mode, loop.max_steps, spe, start_step, reporting.progress_every_s)
