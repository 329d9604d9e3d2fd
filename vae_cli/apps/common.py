"""What vae-eval, vae-sample and vae-prior share: the checkpoint argument, where outputs go, loading the model."""
import logging
import tempfile
from pathlib import Path

import torch
from omegaconf import DictConfig

from vae_cli.build import load_model_from_checkpoint, resolve_device
from vae_cli.errors import UserError

log = logging.getLogger("vae_cli")
RUN_DIR_CHECKPOINTS = ("best.pt", "last.pt")  # what `ckpt=<run dir>` means, in this order


def checkpoint_path(cfg: DictConfig, app: str) -> Path:
    if not cfg.get("ckpt"):
        raise UserError(f"ckpt=... is required, e.g. {app} ckpt=outputs/<date>/<time>/checkpoints/best.pt")
    return resolve_checkpoint(Path(str(cfg.ckpt)).expanduser())


def resolve_checkpoint(path: Path) -> Path:
    """A file as given (the loader reports a missing one); a run dir or its checkpoints/ -> its best.pt, else
    last.pt, else the newest step file. A sweep dir is refused naming its runs."""
    if not path.is_dir():
        return path
    ckpt_dir = path if path.name == "checkpoints" else path / "checkpoints"
    found = [ckpt_dir / n for n in RUN_DIR_CHECKPOINTS] + sorted(ckpt_dir.glob("step_*.pt"), reverse=True)
    for candidate in found:
        if candidate.is_file():
            log.info(f"ckpt={path}: using {candidate}")
            return candidate
    runs = sorted({p.parent.parent for p in path.glob("*/checkpoints/*.pt")})
    if runs:
        raise UserError(f"ckpt={path} is a sweep dir of {len(runs)} runs, not one run: name one, e.g. "
                        f"ckpt={runs[0]}")
    raise UserError(f"ckpt={path} is a directory without checkpoints (nothing in {ckpt_dir}); give a run dir "
                    f"or a .pt file, e.g. ckpt=outputs/<date>/<time>/checkpoints/best.pt")


def output_dir(cfg: DictConfig, ckpt: Path, default_name: str) -> tuple[Path, Path]:
    """(where files go, the TensorBoard dir): the checkpoint's run dir, or `out=` when given."""
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    if cfg.get("out"):
        out = Path(str(cfg.out)).expanduser()
        return out, out
    return run_dir / default_name, run_dir  # the training run's events are in its run dir: one TensorBoard run


def check_out_dir(out: Path, what: str) -> None:
    """`out` must be a directory or creatable as one, and writable: probed by making (and removing) a temporary
    dir inside its nearest existing ancestor, before any work is done. `what`: what goes there."""
    if out.exists() and not out.is_dir():
        raise UserError(f"out={out} is a file; give a directory for {what} (it is created if missing)")
    existing = next(p for p in [out, *out.parents] if p.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is a file")
        tempfile.TemporaryDirectory(dir=existing).cleanup()
    except OSError as e:
        raise UserError(f"cannot write {what} to {out}: {existing} is not a writable directory "
                        f"({e.strerror or e}); choose out=") from None


def load(cfg: DictConfig, ckpt: Path, check=None):
    """`ckpt` (from checkpoint_path) -> checkpoint path, model (eval mode), data, checkpoint dict, device.
    `check(family_class)` refuses an unsupported latent kind before any data loads."""
    device = resolve_device(cfg.device)
    model, data, _, state = load_model_from_checkpoint(ckpt, device, cfg.get("data_dir"), check)
    torch.manual_seed(cfg.seed)
    return ckpt, model, data, state, device
