"""vae-sample: the pictures of one `mode` from a checkpoint, as PNGs and TensorBoard images."""
import logging
import re
from importlib.resources import files
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import save_image

from vae_cli.apps.common import check_out_dir, checkpoint_path, load, output_dir
from vae_cli.build import build_sample_mode
from vae_cli.data import prepare_fixed
from vae_cli.errors import UserError
from vae_cli.apps.sample_modes import Context

log = logging.getLogger("vae_cli")


def run_sample(cfg: DictConfig) -> dict[str, Path]:
    """Draw the pictures of `cfg.mode` from a checkpoint; returns the PNG paths by name."""
    mode = build_sample_mode(cfg)
    path = checkpoint_path(cfg, "vae-sample")
    check_out_dir(output_dir(cfg, path, "samples")[0], "the pictures")  # before any work is done
    ckpt, model, data, state, device = load(cfg, path, check=mode.check)
    x = prepare_fixed(model.likelihood.prepare, data.test.images.to(device), cfg.seed)
    ctx = Context(model, x, data.test.labels.to(device), data.num_classes, str(ckpt))
    with torch.no_grad():
        grids = mode(ctx)
    bad = [name for name, image in grids.items() if not torch.isfinite(image).all()]
    if bad:
        raise UserError(f"mode={mode.name}: non-finite pixels in {', '.join(bad)} (the model decoded NaN or inf; "
                        f"try smaller mode values)")
    out, tb = output_dir(cfg, ckpt, "samples")
    out.mkdir(parents=True, exist_ok=True)
    paths, knobs = {}, changed_knobs(cfg, mode.name)
    with SummaryWriter(str(tb)) as writer:
        for name, image in grids.items():
            paths[name] = out / f"{name}{knobs}.png"
            save_image(image, paths[name])
            writer.add_image(f"vae-sample/{name}{knobs}", image.clamp(0, 1), int(state["step"]))
            log.info(f"{name}: {tuple(image.shape)} -> {paths[name]}")
    return paths


def changed_knobs(cfg: DictConfig, mode_name: str) -> str:
    """'' with every knob at its default, else '_temperature-0.8_seed-3': the mode's knobs and `seed` that
    differ from their defaults, so a picture drawn with other knobs gets a file (and a TensorBoard tag) of its own."""
    mode_file = files("vae_cli.sample_configs") / "mode" / f"{mode_name}.yaml"
    if not mode_file.is_file():  # a mode from outside the package: its own names
        return ""
    defaults = OmegaConf.load(mode_file)
    seed = OmegaConf.load(files("vae_cli.configs") / "sample.yaml").seed
    changed = [(k, v) for k, v in cfg.mode.items() if not k.startswith("_") and defaults.get(k) != v]
    changed += [("seed", cfg.seed)] if cfg.seed != seed else []
    return "".join(f"_{k}-{knob_text(v)}" for k, v in changed)


def knob_text(value) -> str:
    """A value as a file-name part: lists joined by ',', bools and None as typed in YAML, other characters dropped."""
    if OmegaConf.is_list(value) or isinstance(value, (list, tuple)):
        return ",".join(knob_text(v) for v in value)
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return re.sub(r"[^A-Za-z0-9.,+-]", "", str(value))
