"""Misspelled command-line overrides, caught before Hydra composes: one line with the closest names.

`vae-train modle=conv` -> unknown key 'modle' — did you mean 'model'? (groups: dataset, model, ...)
`vae-train model=cnn`  -> unknown option 'cnn' for group 'model' — valid options, closest first: conv, ...
`vae-train trainer.lrr=1` -> unknown key 'trainer.lrr' — did you mean 'trainer.lr'? (keys of trainer: ...)
Plain `key=value` overrides are checked, and for vae-eval / vae-sample / vae-prior (whose keys are all in their
config) also `+key=` / `++key=`, which nothing would read; `~key` and hydra.* are left to Hydra, and so is
everything when --config-name/--config-path/--config-dir change the tree. Nested keys are looked up in the
config composed with the command line's group choices (a swept group: in each job's config).
"""
import difflib
import itertools
import math
from importlib.resources import files

from omegaconf import OmegaConf

from vae_cli.command_line import CommandLine
from vae_cli.errors import UserError

GROUP_ROOTS = {"train": "vae_cli.configs", "sample": "vae_cli.sample_configs",  # vae-prior: none
               "eval": "vae_cli.eval_configs"}
PLUGINS = {("launcher", "joblib"): ("hydra_joblib_launcher", "hydra-joblib-launcher"),  # group option -> its plugin
           ("launcher", "slurm"): ("hydra_submitit_launcher", "hydra-submitit-launcher"),
           ("sweeper", "optuna"): ("hydra_optuna_sweeper", "hydra-optuna-sweeper")}
APP_TOOLS = {"eval": "vae-eval", "sample": "vae-sample", "code_prior": "vae-prior"}  # keys fixed by their config


def tool_groups(config_name: str) -> dict[str, list[str]]:
    """group -> its options, for the groups of this tool's own config root."""
    if config_name not in GROUP_ROOTS:
        return {}
    groups = {}
    for d in files(GROUP_ROOTS[config_name]).iterdir():
        if d.is_dir() and not d.name.startswith(("_", "hydra")):
            groups[d.name] = sorted(f.name[:-5] for f in d.iterdir() if f.name.endswith(".yaml"))
    return {g: opts for g, opts in sorted(groups.items()) if opts}


def top_level_keys(config_name: str) -> list[str]:
    """The keys of the tool's primary config besides defaults and hydra."""
    cfg = OmegaConf.create((files("vae_cli.configs") / f"{config_name}.yaml").read_text())
    return [k for k in cfg.keys() if k not in ("defaults", "hydra")]


def closest(word: str, candidates: list[str]) -> list[str]:
    """All candidates, the most similar to `word` first (difflib ratio; ties alphabetical)."""
    score = {c: difflib.SequenceMatcher(None, word.lower(), c.lower()).ratio() for c in candidates}
    return sorted(candidates, key=lambda c: (-score[c], c))


def unknown_key(key: str, groups: dict, keys: list[str], nested: list[str] = ()) -> str:
    """nested: the dotted keys whose last part is `key` (lr -> trainer.lr): each is suggested, else a near name."""
    near = list(nested) or difflib.get_close_matches(key, list(groups) + keys, n=1, cutoff=0.6)
    hint = f" — did you mean {' or '.join(repr(k) for k in near)}?" if near else ""
    listing = f"groups: {', '.join(groups)}; keys: " if groups else "keys: "
    return f"unknown key '{key}'{hint} ({listing}{', '.join(k for k in keys if k not in groups)})"


def training_hint(config_name: str, key: str) -> str:
    """For a vae-train group or key typed to vae-eval / vae-sample / vae-prior: why it is not theirs."""
    if config_name not in APP_TOOLS or (key not in tool_groups("train") and key not in top_level_keys("train")):
        return ""
    return (f"; '{key}' is a vae-train setting: {APP_TOOLS[config_name]} rebuilds the model and data from the "
            f"checkpoint's stored config (data_dir=... points at another copy of the same dataset)")


def unknown_option(group: str, value: str, options: list[str]) -> str:
    return (f"unknown option '{value}' for group '{group}' — valid options, closest first: "
            f"{', '.join(closest(value, options))}")


def values_of(override) -> list:
    """The plain values an override selects: one, or each value of a choice sweep (a,b,c); [] for others."""
    from hydra.core.override_parser.types import ChoiceSweep

    value = override.value()
    if isinstance(value, ChoiceSweep):
        return list(value.list)
    return [] if override.is_sweep_override() else [value]



def compose_plain(config_name: str, overrides: list[str]) -> dict | None:
    """The tool's config composed with these overrides, unresolved, as plain containers; None if it fails."""
    from hydra import compose, initialize_config_module

    try:
        with initialize_config_module(config_module="vae_cli.configs", version_base="1.3"):
            return OmegaConf.to_container(compose(config_name, overrides=overrides), resolve=False)
    except Exception:  # noqa: BLE001 -- whatever fails here, Hydra says it again, in its words, when it composes
        return None


def nested_leaves(config_name: str, key: str, picks: list[str]) -> list[str]:
    """The dotted keys of the config composed with these group picks whose last part is `key` (lr -> trainer.lr;
    not optimizer.lr, which follows ${trainer.lr})."""
    def leaves(node, prefix=""):
        for k, v in node.items() if isinstance(node, dict) else ():
            yield from leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]
    cfg = compose_plain(config_name, picks) or {}
    return [k for k, v in leaves(cfg) if "." in k and k.rsplit(".", 1)[-1] == key and not k.startswith("hydra.")
            and not str(v).startswith("${")]


def unknown_nested(key: str, cfg: dict) -> str | None:
    """The message for a dotted key that names no key of the composed config, or None if it exists (or the
    path leaves the dicts, e.g. into a list or a null node, where Hydra judges it)."""
    node, parts = cfg, key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            return None
        if part not in node:
            where, keys = ".".join(parts[:i]), [k for k in node if not k.startswith("_")]
            near = difflib.get_close_matches(part, keys, n=1, cutoff=0.6)
            hint = f" — did you mean '{where}.{near[0]}'?" if near else ""
            return f"unknown key '{key}'{hint} (keys of {where}: {', '.join(keys)})"
        node = node[part]
    return None


def check_nested(config_name: str, overrides, most: int = 8) -> None:
    """Dotted keys against the config each job composes: the group choices typed (a swept group gives one
    config per option; more than `most` combinations are left to Hydra)."""
    from hydra.core.override_parser.types import OverrideType

    changes = [o for o in overrides if o.type == OverrideType.CHANGE and not o.package]
    nested = [o.key_or_group for o in changes if "." in o.key_or_group and not o.key_or_group.startswith("hydra.")]
    groups = tool_groups(config_name)
    picks = [[f"{o.key_or_group}={v}" for v in values_of(o)] for o in changes if o.key_or_group in groups]
    if not nested or not all(picks) or math.prod(map(len, picks)) > most:
        return
    for chosen in itertools.product(*picks):
        cfg = compose_plain(config_name, list(chosen))
        message = next(filter(None, (unknown_nested(k, cfg) for k in nested)), None) if cfg is not None else None
        if message:
            raise UserError(message + (f" (with {' '.join(chosen)})" if chosen else ""))


def check_plugin(group: str, option: str) -> None:
    """launcher=joblib|slurm, sweeper=optuna need a Hydra plugin (the `sweeps` extra): one line if it is missing."""
    from importlib.util import find_spec

    module, dist = PLUGINS.get((group, option), (None, None))
    if module and find_spec(f"hydra_plugins.{module}") is None:
        raise UserError(f"{group}={option} needs the Hydra plugin {dist}, which is not installed: "
                        f"pip install -e \".[sweeps]\" (or pip install {dist})")


def check_overrides(config_name: str, line: CommandLine) -> None:
    """Raise a one-line UserError for the first override naming an unknown key or group option (none when Hydra
    answers the line itself: --help, --config-name ..., or a grammar error)."""
    from hydra.core.override_parser.types import OverrideType

    overrides = None if line.tree_flags else line.overrides
    if not overrides:
        return
    groups, keys = tool_groups(config_name), top_level_keys(config_name)
    for o in overrides:
        key = o.key_or_group
        top = key.split(".")[0].split("/")[0]
        added = o.type in (OverrideType.ADD, OverrideType.FORCE_ADD) and config_name in APP_TOOLS  # read by nothing
        if o.type == OverrideType.ADD and key in keys and not o.package:  # Hydra's own message: 4 lines, exit 1
            raise UserError(f"+{key}=...: '{key}' is already a key; set it without the '+' ({key}=...)")
        if (o.type != OverrideType.CHANGE and not added) or top == "hydra" or o.package:
            continue
        if top not in groups and top not in keys:
            picks = [f"{o.key_or_group}={values_of(o)[0]}" for o in overrides if o.key_or_group in groups
                     and len(values_of(o)) == 1]
            nested = nested_leaves(config_name, top, picks) if top == key else []
            raise UserError(unknown_key(top, groups, keys, nested) + training_hint(config_name, top))
        for value in values_of(o) if key in groups else []:
            if value is not None and str(value) not in groups[key]:
                raise UserError(unknown_option(key, str(value), groups[key]))
        for value in values_of(o) if key in ("launcher", "sweeper") else []:
            check_plugin(key, str(value))
    check_nested(config_name, overrides)
