"""What vae-eval and vae-sample share: the checkpoint argument, where outputs go, loading the model."""
from pathlib import Path

import torch
from omegaconf import DictConfig

from vae_cli.build import load_model_from_checkpoint, resolve_device
from vae_cli.errors import UserError


def checkpoint_path(cfg: DictConfig, app: str) -> Path:
    if not cfg.get("ckpt"):
        raise UserError(f"ckpt=... is required, e.g. {app} ckpt=outputs/<date>/<time>/checkpoints/best.pt")
    return Path(str(cfg.ckpt)).expanduser()


def output_dir(cfg: DictConfig, ckpt: Path, default_name: str) -> tuple[Path, Path]:
    """(where files go, the TensorBoard dir): the checkpoint's run dir, or `out=` when given."""
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    if cfg.get("out"):
        out = Path(str(cfg.out)).expanduser()
        return out, out / "tb"
    return run_dir / default_name, run_dir / "tb"


def load(cfg: DictConfig, app: str, check=None):
    """-> checkpoint path, model (eval mode), data, checkpoint dict, device. `check(family_class)` refuses an
    unsupported latent kind before any data loads."""
    ckpt = checkpoint_path(cfg, app)
    device = resolve_device(cfg.device)
    model, data, _, state = load_model_from_checkpoint(ckpt, device, cfg.get("data_dir"), check)
    torch.manual_seed(cfg.seed)
    return ckpt, model, data, state, device
