"""The option lists of docs/configs.md, generated from the config files themselves (like `--help`), so the page
cannot go stale: tests/test_docs_commands.py regenerates them and compares.

  python -m vae_cli.config_docs                      print the generated part
  python -m vae_cli.config_docs --check docs/configs.md   exit 1 if the page's generated part differs
  python -m vae_cli.config_docs --write docs/configs.md   rewrite the page's generated part in place
"""
import argparse
import re
import sys
from importlib.resources import files
from pathlib import Path

from omegaconf import OmegaConf

from vae_cli.cli_help import GROUP_DOCS, GROUP_MEANINGS, default_choices, first_comment
from vae_cli.overrides import tool_groups

BEGIN, END = "<!-- BEGIN GENERATED: python -m vae_cli.config_docs -->", "<!-- END GENERATED -->"
LINE = re.compile(r"^(\s*)([A-Za-z_]\w*):\s*(.*?)\s*(?:#\s*(.*))?$")
SKIP = ("_target_", "_partial_", "_convert_", "defaults")
MEANINGS = {  # a key without an inline comment in its YAML file: its meaning by its last name (or its dotted path)
    "hidden_sizes": "widths of the fully connected layers", "activation": "a torch.nn activation class name",
    "channels": "conv channels per stride-2 layer", "hidden": "width of the fully connected layer after the convs",
    "latent_dim": "number of latent dimensions (the top layer's, in a hierarchy)",
    "lower_dims": "sizes of the lower stochastic layers z_1 ... z_{L-1}, bottom first ([]: one layer)",
    "block_sizes": "widths of the bottom-up blocks between stochastic layers, one list per lower layer",
    "td_sizes": "widths of the top-down stream", "num_samples": "K, samples per example",
    "batch_size": "examples per optimizer step", "lr": "the base learning rate",
    "eval_batch_size": "examples per validation batch", "num_images": "images in each logged sample grid",
    "log_every": "steps between train/ scalars and a log line", "max_steps": "run length in optimizer steps",
    "eval_every": "steps between validation, images and checkpoints", "min_scale": "lower bound of the scales",
    "dataset.name": "the torchvision dataset class", "val_size": "training images held out for validation",
    "split_seed": "seed of the train/validation split", "dataset.seed": "seed of the synthetic images",
    "binarizable": "true: binary-valued images for likelihood=bernoulli; false: 8-bit data",
    "num_train": "training images", "num_val": "validation images", "num_test": "test images",
    "image_shape": "[channels, height, width]", "num_classes": "number of classes (labels)",
    "num_pseudo": "K, learned pseudo-inputs", "num_components": "number of mixture components",
    "num_layers": "number of flow steps", "forget_bias": "IAF: initial bias of the gate (sigma = sigmoid)",
    "num_latents": "N, categorical latents", "num_codes": "K, codebook size", "code_dim": "D, size of each code",
    "init_std": "initial scale of the components", "init_spread": "spread of the initial component means",
    "free_bits": "lambda, nats per latent dim (0: off)", "commitment": "beta_c, weight of the commitment loss",
    "objective.temperature.start": "tau at step 0", "objective.temperature.rate": "exponential decay per step",
    "objective.temperature.minimum": "lowest tau", "warmup_steps": "steps of the linear warm-up",
    "schedule.start": "factor of beta at step 0", "ratio": "fraction of each cycle during which beta rises",
    "n_cycles": "number of cycles over the run", "min_factor": "final lr as a fraction of trainer.lr",
    "step_size": "steps between lr decays (null: a quarter of the run)", "gamma": "lr factor at each decay",
    "timeout_min": "SLURM time limit per job, minutes", "nodes": "SLURM nodes per job",
    "tasks_per_node": "SLURM tasks per node", "gpus_per_node": "GPUs per job", "cpus_per_task": "CPUs per job",
    "mem_gb": "memory per job, GB", "array_parallelism": "most jobs of the array running at once",
    "direction": "maximize: vae-train returns the final validation ELBO", "study_name": "the Optuna study's name",
    "storage": "Optuna storage URL (null: in memory)", "n_trials": "number of runs the search makes",
    "hydra.sweeper.params.beta": "the search space of beta", "hydra.sweeper.params.latent_dim": "... of latent_dim",
"beta": "weight of the KL term", "seed": "seeds the initialization, the batch order and every sample",
    "eps": "Adam epsilon", "betas": "Adam moment decay rates", "weight_decay": "L2 penalty",
}


def key_comments(text: str) -> dict[str, str]:
    """{dotted key: its inline comment} of a YAML file, the dots following indentation."""
    comments, stack = {}, []  # stack: (indent, key)
    for line in text.splitlines():
        m = LINE.match(line)
        if not m or line.lstrip().startswith(("#", "-")):
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(2)))
        if m.group(4):
            comments[".".join(k for _, k in stack)] = m.group(4)
    return comments


def flat_keys(node, prefix: str = "") -> list[tuple[str, str]]:
    """[(dotted key, value as typed)] of the leaves, parts' plumbing (_target_, defaults) left out."""
    out = []
    for key, value in node.items_ex(resolve=False) if OmegaConf.is_dict(node) else []:
        if key in SKIP:
            continue
        path = f"{prefix}{key}"
        if OmegaConf.is_dict(value) and len(value):
            out += flat_keys(value, path + ".")
        else:
            shown = OmegaConf.to_container(value, resolve=False) if OmegaConf.is_config(value) else value
            out.append((path, _yaml(shown)))
    return out


def _yaml(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value).replace("'", "")


def option_rows(root, group: str, option: str) -> list[str]:
    text = (root / group / f"{option}.yaml").read_text()
    glob = "# @package _global_" in text
    prefix = "" if glob else f"{group}."
    comments = key_comments(text)
    rows = []
    for key, value in flat_keys(OmegaConf.create(text)):
        meaning = comments.get(key) or MEANINGS.get(f"{prefix}{key}") or MEANINGS.get(key.split(".")[-1], "")
        if not meaning and value.startswith("${") and value.endswith("}"):
            meaning = f"follows `{value[2:-1]}`"
        rows.append(f"  - `{prefix}{key}={value}`" + (f": {meaning}" if meaning else ""))
    return rows


def generate(config_name: str = "train") -> str:
    """Markdown: one section per group, one bullet per option with its summary and its keys."""
    from vae_cli.overrides import GROUP_ROOTS
    root, defaults, out = files(GROUP_ROOTS.get(config_name, "vae_cli.configs")), default_choices(config_name), []
    for group, options in tool_groups(config_name).items():
        doc = GROUP_DOCS.get(group, "docs/configs.md")
        page = f" More: [{doc}]({Path(doc).name})." if doc != "docs/configs.md" else ""
        out += [f"### `{group}`: {GROUP_MEANINGS.get(group, '')}", "", f"Options of `{group}=`" +
                (f" (default `{defaults[group]}`)" if defaults.get(group, "None") != "None" else " (default: none)") + f".{page}", ""]
        for option in options:
            summary = first_comment((root / group / f"{option}.yaml").read_text())
            out.append(f"- **`{option}`**: {summary}".rstrip())
            out += option_rows(root, group, option)
        out.append("")
    out += ["### Top-level keys", "", "Typed without a prefix (`beta=4`); shown with their defaults.", ""]
    comments = key_comments((files("vae_cli.configs") / f"{config_name}.yaml").read_text())
    cfg = OmegaConf.create((files("vae_cli.configs") / f"{config_name}.yaml").read_text())
    for key, value in flat_keys(cfg):
        if not key.startswith("hydra."):
            meaning = comments.get(key) or MEANINGS.get(key, "")
            out.append(f"- `{key}={value}`" + (f": {meaning}" if meaning else ""))
    return "\n".join(out).rstrip() + "\n"


def page_part(page: str) -> str:
    """The generated part of a page, between the BEGIN and END markers."""
    if BEGIN not in page or END not in page:
        raise ValueError(f"the page has no {BEGIN} ... {END} markers")
    return page.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", metavar="PAGE", help="exit 1 if PAGE's generated part is not up to date")
    parser.add_argument("--write", metavar="PAGE", help="rewrite PAGE's generated part")
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        if page_part(Path(args.check).read_text()) != text:
            print(f"{args.check} is stale: run python -m vae_cli.config_docs --write {args.check}", file=sys.stderr)
            return 1
        print(f"{args.check}: up to date")
    elif args.write:
        page = Path(args.write).read_text()
        head, tail = page.split(BEGIN, 1)[0], page.split(END, 1)[1]
        Path(args.write).write_text(f"{head}{BEGIN}\n{text}{END}{tail}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
