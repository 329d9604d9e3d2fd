"""Run-dir names and the paths typed back on the command line: every path the tools print can be pasted into
`ckpt=`, `resume=`, `out=` or `hydra.run.dir=` as it is, inside and outside `-m`.

Names: Hydra joins a run's overrides as `key-value_key-value` (train.yaml sets override_dirname's kv_sep and
item_sep); `run_suffix` keeps only characters that Hydra's override grammar takes unquoted. Paths typed back:
`quote_paths` quotes the value of a path key when it names an existing file or dir (a run dir from an older
version may hold `=` or `,`), so Hydra reads it as one string, not as a sweep or a syntax error.
"""
import re
from pathlib import Path

from omegaconf import OmegaConf

PATH_KEYS = ("ckpt", "resume", "out", "data_dir", "hydra.run.dir", "hydra.sweep.dir")
UNSAFE = re.compile(r"[^A-Za-z0-9_.+\-]")  # what the grammar takes unquoted, less '/' (it would nest dirs)
MAX_NAME = 150  # characters of overrides in a dir name


def run_suffix(override_dirname) -> str:
    """'' or '_beta-4_model-conv': the overrides in a run's dir name ([1,8,8] -> 1-8-8, a/b -> a-b)."""
    name = re.sub(r"[\[\]{}()'\"]", "", str(override_dirname or ""))
    name = UNSAFE.sub("-", name)[:MAX_NAME]
    return f"_{name}" if name else ""


def register_run_name_resolver() -> None:
    OmegaConf.register_new_resolver("vae_run_suffix", run_suffix, replace=True)


def quote_paths(argv: list[str]) -> list[str]:
    """argv with `key=PATH` -> `key='PATH'` for PATH_KEYS whose unquoted value names an existing file or dir."""
    return [argv[0], *(_quoted(a) for a in argv[1:])]


def _quoted(arg: str) -> str:
    key, eq, value = arg.partition("=")
    if not eq or key.lstrip("+") not in PATH_KEYS or not value or value[0] in "'\"" or value in ("true", "false"):
        return arg
    if not UNSAFE.search(value.replace("/", "")) or not Path(value).expanduser().exists():
        return arg  # plain for Hydra already, or not a path: a sweep (a,b) or a mistake Hydra names
    return f"{key}='" + value.replace("'", "\\'") + "'"
