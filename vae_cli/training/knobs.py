"""The trainer's knobs in typed groups. Users type them flat (`trainer.lr`, `trainer.eval_every` ...): `split`
sorts a flat mapping into the groups. Each field declares its rule and whether a resumed run may change it
(checks.py); each group checks its own values (one ConfigError naming the key), and the plan reads the same
declarations from the config before anything is built. A new knob is one field here and one line in
configs/trainer/default.yaml."""
import inspect
from dataclasses import MISSING, dataclass, fields
from typing import Annotated

from vae_cli.checks import (BOOL, NONNEG_INT, OPT_POSITIVE, OPT_POSITIVE_INT, POSITIVE, POSITIVE_INT, RESUMABLE,
                            Rule, check_arguments)
from vae_cli.errors import ConfigError
from vae_cli.training.progress import check_setting

COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
NONFINITE = Rule(lambda x: x in ("raise", "skip"), "raise or skip")  # training/nonfinite.py
CUDA_GRAPH = Rule(lambda x: x in (True, False, "auto"), "auto, true or false")


class _Checked:
    def __post_init__(self):
        check_arguments("trainer", type(self), vars(self))


@dataclass(frozen=True)
class Loop(_Checked):
    """How long, on what batches, with which update; what a non-finite step does (training/nonfinite.py)."""

    max_steps: Annotated[int, POSITIVE_INT, RESUMABLE]
    batch_size: Annotated[int, POSITIVE_INT] = 128
    lr: Annotated[float, POSITIVE] = 1e-3  # the base learning rate (configs/optimizer reads it as ${trainer.lr})
    grad_clip: Annotated[float | None, OPT_POSITIVE] = None
    seed: int = 0
    nonfinite: Annotated[str, NONFINITE, RESUMABLE] = "raise"
    max_skips: Annotated[int, POSITIVE_INT, RESUMABLE] = 10


@dataclass(frozen=True)
class Reporting(_Checked):
    """Train scalars and log lines every `log_every` steps; the progress bar or lines (training/progress.py)."""

    log_every: Annotated[int, POSITIVE_INT, RESUMABLE] = 100
    progress: Annotated[str | bool, RESUMABLE] = "auto"
    progress_every_s: Annotated[float, RESUMABLE] = 30.0

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "progress", check_setting(self.progress))  # 'auto', 'true' or 'false'


@dataclass(frozen=True)
class Evaluation(_Checked):
    """Validation, pictures and a checkpoint every `eval_every` steps (null: once per epoch) and at the end;
    eval_at_start: also at step 0 of a fresh run (for tasks that validate there)."""

    eval_every: Annotated[int | None, OPT_POSITIVE_INT, RESUMABLE] = 1000
    eval_batch_size: Annotated[int, POSITIVE_INT, RESUMABLE] = 1000
    num_images: Annotated[int, POSITIVE_INT, RESUMABLE] = 64
    eval_at_start: Annotated[bool, BOOL, RESUMABLE] = True


@dataclass(frozen=True)
class Checkpointing(_Checked):
    """step_N.pt files kept besides last.pt and best.pt (0: none)."""

    keep_last: Annotated[int, NONNEG_INT, RESUMABLE] = 3


@dataclass(frozen=True)
class Speed(_Checked):
    """Device-speed knobs (training/speed.py, training/step.py); `threads` is applied by the CLI before torch
    starts its thread pool (training/threads.py) and only recorded here."""

    precision: str = "fp32"
    compile: bool = False
    compile_mode: str | None = None
    tf32: bool = True
    channels_last: bool = False
    cuda_graph: Annotated[bool | str, CUDA_GRAPH] = "auto"
    threads: Annotated[int | None, OPT_POSITIVE_INT] = None

    def __post_init__(self):
        if self.precision not in ("fp32", "bf16", "auto"):
            raise ConfigError(f"trainer.precision={self.precision!r}; choose one of fp32, bf16, auto")
        if self.compile_mode not in COMPILE_MODES:
            raise ConfigError(f"trainer.compile_mode={self.compile_mode!r}; choose one of {COMPILE_MODES}")
        super().__post_init__()


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
