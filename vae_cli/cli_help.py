"""`--help` pages: Hydra's help templates (configs/hydra/help/*.yaml) filled by two resolvers that read the
config files themselves, so a new option or key shows up with its one-line meaning without editing help text.

  ${vae_groups:train}  each group of the tool, its options (* = default) and each option's first comment line
  ${vae_keys:train}    the primary config's top-level keys with their default and their inline comment
"""
import re
from importlib.resources import files

from omegaconf import OmegaConf

from vae_cli.overrides import GROUP_ROOTS, tool_groups

GROUP_MEANINGS = {  # one line per group; a group missing here is still listed, with its options
    "dataset": "the images (train/val/test splits)", "model": "the encoder/decoder family",
    "posterior": "q(z|x): the latent distribution the encoder outputs", "prior": "p(z)",
    "likelihood": "p(x|z): the pixel distribution", "objective": "what is minimized (ELBO variants, IWAE ...)",
    "schedule": "beta over steps (KL annealing)", "trainer": "steps, batch size, lr, logging, speed knobs",
    "experiment": "named bundles of the above", "launcher": "where --multirun jobs run (needs .[sweeps])",
    "sweeper": "how --multirun picks values (optuna; needs .[sweeps])", "mode": "the picture to draw",
    "preset": "how thorough: the evaluation keys a named setting sets",
    "optimizer": "the optimizer", "lr_schedule": "the learning rate over steps",
}
KEY_LINE = re.compile(r"^([A-Za-z_]\w*):\s*(.*?)\s*(?:#\s*(.*))?$")


GROUP_DOCS = {  # the docs page of each group, printed beside it
    "dataset": "docs/data.md", "model": "docs/models.md", "posterior": "docs/models.md", "prior": "docs/models.md",
    "likelihood": "docs/models.md", "objective": "docs/models.md", "schedule": "docs/models.md",
    "experiment": "docs/models.md", "trainer": "docs/configs.md", "optimizer": "docs/configs.md",
    "lr_schedule": "docs/configs.md", "launcher": "docs/sweeps.md", "sweeper": "docs/sweeps.md",
    "mode": "docs/evaluation.md", "preset": "docs/evaluation.md",
}
SENTENCE_END = (".", "!", "?")


def header_lines(text: str) -> list[str]:
    """An option file's header comment, line by line ('# @package' skipped)."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith("# @package"):
            lines.append(line.lstrip("#").strip())
    return lines


def first_comment(text: str) -> str:
    """The header's first sentence: its lines up to the first that ends one (the whole header if none does), so a
    description is never cut off mid-sentence; '' without a header."""
    summary = []
    for line in header_lines(text):
        summary.append(line)
        if line.endswith(SENTENCE_END):
            break
    return " ".join(summary)


def default_choices(config_name: str) -> dict[str, str]:
    cfg = OmegaConf.create((files("vae_cli.configs") / f"{config_name}.yaml").read_text())
    picks = [d for d in cfg.get("defaults", []) if not isinstance(d, str)]
    return {k.split(" ")[-1]: str(v) for d in picks for k, v in d.items() if "override" not in k}


def groups_text(config_name: str) -> str:
    """  model        the encoder/decoder family
           conv*      Stride-2 convs: ..."""
    root, defaults, lines = files(GROUP_ROOTS.get(config_name, "vae_cli.configs")), default_choices(config_name), []
    for group, options in tool_groups(config_name).items():
        page = f"  ({GROUP_DOCS[group]})" if group in GROUP_DOCS else ""
        lines.append(f"  {group:<12} {GROUP_MEANINGS.get(group, '')}{page}".rstrip())
        for opt in options:
            mark = "*" if defaults.get(group) == opt else ""
            meaning = first_comment((root / group / f"{opt}.yaml").read_text())
            lines.append(f"      {opt + mark:<22} {meaning}".rstrip())
    return escape("\n".join(lines) or "  (none)")


def keys_text(config_name: str) -> str:
    """  beta=1.0            weight of the KL term ..."""
    lines = []
    for line in (files("vae_cli.configs") / f"{config_name}.yaml").read_text().splitlines():
        m = KEY_LINE.match(line)
        if m and m.group(1) not in ("defaults", "hydra") and m.group(2):
            lines.append(f"  {m.group(1) + '=' + m.group(2):<22}{m.group(3) or ''}".rstrip())
    return escape("\n".join(lines))


def escape(text: str) -> str:
    """Hydra runs string.Template over the page after resolving: a literal $ must be $$."""
    return text.replace("$", "$$")


def register_help_resolvers() -> None:
    OmegaConf.register_new_resolver("vae_groups", groups_text, replace=True)
    OmegaConf.register_new_resolver("vae_keys", keys_text, replace=True)
