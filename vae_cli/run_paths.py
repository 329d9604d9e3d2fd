"""Run-dir names and the paths typed back on the command line: every path the tools print can be pasted into
`ckpt=`, `resume=`, `out=` or `hydra.run.dir=` as it is, inside and outside `-m`.

Names: Hydra joins a run's overrides as `key-value_key-value` (train.yaml sets override_dirname's kv_sep and
item_sep); `run_suffix` keeps only characters that Hydra's override grammar takes unquoted. Paths typed back
are quoted where the command line is read (command_line.quote_paths).
"""
import re

from omegaconf import OmegaConf

UNSAFE = re.compile(r"[^A-Za-z0-9_.+\-]")  # what the grammar takes unquoted, less '/' (it would nest dirs)
MAX_NAME = 150  # characters of overrides in a dir name


def run_suffix(override_dirname) -> str:
    """'' or '_beta-4_model-conv': the overrides in a run's dir name ([1,8,8] -> 1-8-8, a/b -> a-b)."""
    name = re.sub(r"[\[\]{}()'\"]", "", str(override_dirname or ""))
    name = UNSAFE.sub("-", name)[:MAX_NAME]
    return f"_{name}" if name else ""


def register_run_name_resolver() -> None:
    OmegaConf.register_new_resolver("vae_run_suffix", run_suffix, replace=True)
