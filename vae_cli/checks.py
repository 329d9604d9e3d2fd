"""Rules a constructor applies to its own arguments, declared on the argument itself:

    def __init__(self, lr: Annotated[float, POSITIVE] = 1e-3, log_every: Annotated[int, POSITIVE_INT, RESUMABLE] = 100)

`check_arguments` raises one `ConfigError` line naming the config key, the offending value and what is allowed
(`trainer.lr=0 must be a finite number > 0`); `RESUMABLE` marks a value that sets how long, where or how loudly a
run goes, not what it trains, so a resumed run may change it. No torch, no config here.
"""
import inspect
import math
from numbers import Real
from typing import Callable, NamedTuple

from vae_cli.errors import ConfigError

RESUMABLE = "may change when a run resumes"


class Rule(NamedTuple):
    ok: Callable[[object], bool]
    what: str  # what the value must be


def _int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _num(x) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool) and math.isfinite(x)


POSITIVE_INT = Rule(lambda x: _int(x) and x > 0, "a positive integer")
NONNEG_INT = Rule(lambda x: _int(x) and x >= 0, "an integer >= 0")
POSITIVE = Rule(lambda x: _num(x) and x > 0, "a finite number > 0")
NONNEG = Rule(lambda x: _num(x) and x >= 0, "a finite number >= 0")
OPT_POSITIVE_INT = Rule(lambda x: x is None or POSITIVE_INT.ok(x), "a positive integer or null")
OPT_POSITIVE = Rule(lambda x: x is None or POSITIVE.ok(x), "a number > 0 or null")
INT = Rule(_int, "an integer")
BOOL = Rule(lambda x: isinstance(x, bool), "true or false")
UNIT = Rule(lambda x: _num(x) and 0 <= x <= 1, "in [0, 1]")
FRACTION = Rule(lambda x: _num(x) and 0 < x <= 1, "in (0, 1]")
SIZES = Rule(lambda x: isinstance(x, (list, tuple)) and all(POSITIVE_INT.ok(v) for v in x),
             "a list of positive integers")
WIDTHS = Rule(lambda x: SIZES.ok(x) and len(x) > 0,
              "a non-empty list of positive integers (the last is the feature width)")
SPLIT = Rule(lambda x: (_int(x) and x >= 1) or (_num(x) and (0 < x < 1 or float(x).is_integer() and x >= 1)),
             "a count >= 1 or a fraction in (0, 1)")
SHAPE = Rule(lambda x: isinstance(x, (list, tuple)) and len(x) == 3 and all(POSITIVE_INT.ok(v) for v in x),
             "a list [C, H, W] of three positive integers")


def check(key: str, value, rule: Rule) -> None:
    """Raise `key=value must be ...` unless `value` satisfies `rule`."""
    if not rule.ok(value):
        raise ConfigError(f"{key}={value!r} must be {rule.what}")


def _metadata(fn) -> dict[str, tuple]:
    """argument name -> the Annotated metadata of `fn`'s signature (a class: its __init__)."""
    params = inspect.signature(fn).parameters
    return {name: getattr(p.annotation, "__metadata__", ()) for name, p in params.items()}


def check_arguments(prefix: str, fn, values: dict) -> None:
    """Every Rule annotated on `fn`'s arguments, applied to those in `values` (a constructor's locals(), or a
    config node's plain values before anything is built), in signature order."""
    for name, marks in _metadata(fn).items():
        for rule in (m for m in marks if isinstance(m, Rule) and name in values):
            check(f"{prefix}.{name}", values[name], rule)


def resumable(fn) -> list[str]:
    """The arguments of `fn` (a class or function) marked RESUMABLE; [] when it cannot be inspected."""
    try:
        return [name for name, marks in _metadata(fn).items() if RESUMABLE in marks]
    except (TypeError, ValueError):
        return []
