"""The command line, read once: Hydra's own argument parser and override grammar over `argv`, one parsed view
that the thread policy, resume, the run-dir checks, torchrun's ranks and the typo hints all read.

No torch here: `vae-train` reads its thread settings from this view before torch starts its thread pool.
"""
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from vae_cli.errors import UserError
from vae_cli.run_paths import UNSAFE

TREE_FLAGS = {"config_name", "config_path", "config_dir", "help", "hydra_help", "shell_completion", "info"}
SETS = ("CHANGE", "ADD", "FORCE_ADD")  # override types that give a key a value
PATH_KEYS = ("ckpt", "resume", "out", "data_dir", "hydra.run.dir", "hydra.sweep.dir")


def _parse_overrides(texts: list[str]) -> tuple | None:
    """Hydra Override objects, or None for a line Hydra's grammar refuses (Hydra then says where)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return tuple(OverridesParser.create().parse_overrides(texts))
    except Exception:  # noqa: BLE001 -- a grammar error: Hydra reports it in its words when it composes
        return None


@dataclass(frozen=True)
class CommandLine:
    """`program args...` as typed; `overrides` the parsed key=value arguments (None: not parseable)."""

    program: str
    args: tuple[str, ...]
    overrides: tuple | None
    multirun: bool
    tree_flags: bool  # --help, --info, --config-name ...: Hydra answers these itself

    @classmethod
    def parse(cls, argv: list[str]) -> "CommandLine":
        from hydra._internal.utils import get_args_parser

        argv = quote_paths(argv)  # a printed path pasted back as it is (a run dir may hold '=' or ',')
        flags, _ = get_args_parser().parse_known_args(list(argv[1:]))
        return cls(argv[0], tuple(argv[1:]), _parse_overrides(flags.overrides), bool(flags.multirun),
                   any(getattr(flags, f, None) for f in TREE_FLAGS))

    @property
    def argv(self) -> list[str]:
        return [self.program, *self.args]

    def plus(self, *args: str) -> "CommandLine":
        return CommandLine.parse([*self.argv, *args]) if args else self

    def setting(self, key: str):
        """The last override that gives `key` a value (key=, +key=, ++key=), or None."""
        found = [o for o in self.overrides or () if o.key_or_group == key and o.type.name in SETS]
        return found[-1] if found else None

    def value(self, key: str):
        """The plain value typed for `key` (a sweep a,b,c gives None: each job reads its own), or None."""
        o = self.setting(key)
        return None if o is None or o.is_sweep_override() else o.value()

    def typed(self, key: str) -> bool:
        return self.setting(key) is not None

    def text(self, key: str) -> str | None:
        """What follows `key=` in the last argument typed as `key=...`, as typed: for a value Hydra's grammar cannot
        read unquoted, such as a run dir named `..._beta=4,model=conv` given to resume=."""
        found = [a.split("=", 1)[1] for a in self.args if a.startswith(f"{key}=")]
        return found[-1] if found else None


def with_resumed_run(line: CommandLine) -> CommandLine:
    """`vae-train resume=RUN_DIR [overrides]` -> the original run's overrides, then the new ones, then
    hydra.run.dir=RUN_DIR, so Hydra composes the same config in the same dir. Other lines are returned as is."""
    path = line.value("resume") if line.overrides is not None else line.text("resume")  # unquoted: as typed
    if path is None or isinstance(path, bool) or str(path) in ("", "true", "True", "false", "False", "null", "None"):
        return line
    if line.multirun:
        raise UserError("resume=PATH resumes one run; for a sweep re-run it with resume=true "
                        "hydra.sweep.dir=<the sweep's dir>")
    path = Path(str(path))
    run_dir = _run_dir_of(path)
    new = [a for a in line.args if not a.lstrip("+").startswith("resume=")]
    given = {o.key_or_group for a in new for o in _parse_overrides([a]) or ()}
    stored = run_dir / ".hydra" / "overrides.yaml"
    old = _parse_overrides(list(OmegaConf.load(stored))) if stored.is_file() else ()
    old = [o.input_line for o in old or () if o.key_or_group not in given and o.key_or_group != "resume"]
    return CommandLine.parse([line.program, *old, *new, f"resume={_quote(str(path))}",
                              f"hydra.run.dir={_quote(str(run_dir))}"])


def _run_dir_of(path: Path) -> Path:
    if path.is_file():
        return path.parent.parent if path.parent.name == "checkpoints" else path.parent
    if path.is_dir():
        return path.parent if path.name == "checkpoints" else path
    raise UserError(f"resume={path}: no such run dir or checkpoint file")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def typed_dir(line: CommandLine) -> tuple[str, str | None]:
    """(the key, its value): hydra.sweep.dir for -m, else hydra.run.dir, as typed (None: Hydra's default)."""
    key = "hydra.sweep.dir" if line.multirun else "hydra.run.dir"
    value = line.value(key)
    return key, None if value in (None, "") else str(value)


def quote_paths(argv: list[str]) -> list[str]:
    """argv with `key=PATH` -> `key='PATH'` for PATH_KEYS whose unquoted value names an existing file or dir, so
    Hydra reads it as one string, not as a sweep or a syntax error."""
    return [argv[0], *(_quoted(a) for a in argv[1:])]


def _quoted(arg: str) -> str:
    key, eq, value = arg.partition("=")
    if not eq or key.lstrip("+") not in PATH_KEYS or not value or value[0] in "'\"" or value in ("true", "false"):
        return arg
    if not UNSAFE.search(value.replace("/", "")) or not Path(value).expanduser().exists():
        return arg  # plain for Hydra already, or not a path: a sweep (a,b) or a mistake Hydra names
    return f"{key}='" + value.replace("'", "\\'") + "'"
