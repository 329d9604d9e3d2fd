"""The trainer's knobs in typed groups. Users type them flat (`trainer.lr`, `trainer.eval_every` ...): `split`
sorts a flat mapping into the groups, and each group checks its own values (one ConfigError naming the key).
A new knob is one field here and one line in configs/trainer/default.yaml."""
import inspect
import math
from dataclasses import MISSING, dataclass, fields
from numbers import Real

from vae_cli.errors import ConfigError
from vae_cli.training.progress import check_setting

COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _check(key: str, value, ok: bool, what: str) -> None:
    if not ok:
        raise ConfigError(f"trainer.{key}={value!r} must be {what}")


def _int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _positive(x) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@dataclass(frozen=True)
class Loop:
    """How long, on what batches, with which update; what a non-finite step does (training/nonfinite.py)."""

    max_steps: int
    batch_size: int = 128
    lr: float = 1e-3  # the base learning rate (configs/optimizer reads it as ${trainer.lr})
    grad_clip: float | None = None
    seed: int = 0
    nonfinite: str = "raise"
    max_skips: int = 10

    def __post_init__(self):
        for key in ("max_steps", "batch_size", "max_skips"):
            _check(key, getattr(self, key), _int(getattr(self, key)) and getattr(self, key) > 0, "a positive integer")
        _check("lr", self.lr, _positive(self.lr), "a finite number > 0")
        _check("grad_clip", self.grad_clip, self.grad_clip is None or _positive(self.grad_clip),
               "a number > 0 or null")
        _check("nonfinite", self.nonfinite, self.nonfinite in ("raise", "skip"), "raise or skip")


@dataclass(frozen=True)
class Reporting:
    """Train scalars and log lines every `log_every` steps; the progress bar or lines (training/progress.py)."""

    log_every: int = 100
    progress: str | bool = "auto"
    progress_every_s: float = 30.0

    def __post_init__(self):
        _check("log_every", self.log_every, _int(self.log_every) and self.log_every > 0, "a positive integer")
        object.__setattr__(self, "progress", check_setting(self.progress))  # 'auto', 'true' or 'false'


@dataclass(frozen=True)
class Evaluation:
    """Validation, pictures and a checkpoint every `eval_every` steps (null: once per epoch) and at the end."""

    eval_every: int | None = 1000
    eval_batch_size: int = 1000
    num_images: int = 64

    def __post_init__(self):
        _check("eval_every", self.eval_every, self.eval_every is None or (_int(self.eval_every) and self.eval_every > 0),
               "a positive integer or null")
        for key in ("eval_batch_size", "num_images"):
            _check(key, getattr(self, key), _int(getattr(self, key)) and getattr(self, key) > 0, "a positive integer")


@dataclass(frozen=True)
class Checkpointing:
    """step_N.pt files kept besides last.pt and best.pt (0: none)."""

    keep_last: int = 3

    def __post_init__(self):
        _check("keep_last", self.keep_last, _int(self.keep_last) and self.keep_last >= 0, "an integer >= 0")


@dataclass(frozen=True)
class Speed:
    """Device-speed knobs (training/speed.py, training/step.py); `threads` is applied by the CLI before torch
    starts its thread pool (training/threads.py) and only recorded here."""

    precision: str = "fp32"
    compile: bool = False
    compile_mode: str | None = None
    tf32: bool = True
    channels_last: bool = False
    cuda_graph: bool | str = "auto"
    threads: int | None = None

    def __post_init__(self):
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"trainer.precision={self.precision!r}; choose fp32 or bf16")
        if self.compile_mode not in COMPILE_MODES:
            raise ConfigError(f"trainer.compile_mode={self.compile_mode!r}; choose one of {COMPILE_MODES}")
        _check("cuda_graph", self.cuda_graph, self.cuda_graph in (True, False, "auto"), "auto, true or false")
        _check("threads", self.threads, self.threads is None or (_int(self.threads) and self.threads > 0),
               "a positive integer or null")


GROUPS = {"loop": Loop, "reporting": Reporting, "evaluation": Evaluation, "checkpointing": Checkpointing,
          "speed": Speed}


def split(knobs: dict) -> dict:
    """Flat knobs {"lr": ..., "eval_every": ...} -> {"loop": Loop(...), "evaluation": Evaluation(...), ...}."""
    names = {f.name: group for group, cls in GROUPS.items() for f in fields(cls)}
    unknown = sorted(set(knobs) - set(names))
    if unknown:
        raise ConfigError(f"trainer.{unknown[0]}: the trainer takes no key {unknown[0]!r} (it takes "
                          f"{', '.join(sorted(names))})")
    return {group: cls(**{k: v for k, v in knobs.items() if names[k] == group}) for group, cls in GROUPS.items()}


def signature(*leading: inspect.Parameter) -> inspect.Signature:
    """`leading` parameters, then every knob as a keyword (with its default): what the flat YAML node takes."""
    knobs = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=f.type,
                               default=inspect.Parameter.empty if f.default is MISSING else f.default)
             for cls in GROUPS.values() for f in fields(cls)]
    return inspect.Signature([*leading, *knobs])
