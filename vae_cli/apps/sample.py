"""vae-sample: the pictures of one `mode` from a checkpoint, as PNGs and TensorBoard images."""
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig
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
    paths = {}
    with SummaryWriter(str(tb)) as writer:
        for name, image in grids.items():
            paths[name] = out / f"{name}.png"
            save_image(image, paths[name])
            writer.add_image(f"vae-sample/{name}", image.clamp(0, 1), int(state["step"]))
            log.info(f"{name}: {tuple(image.shape)} -> {paths[name]}")
    return paths
