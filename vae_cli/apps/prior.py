"""vae-prior: the VQ-VAE's second stage. Encode the data to code grids with a trained VQ-VAE, fit an
autoregressive prior over them, report its NLL in bits per code, and decode prior samples to images."""
import hashlib
import logging
import math
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torchvision.utils import make_grid, save_image

from vae_cli.apps.common import resolve_checkpoint
from vae_cli.build import build_code_prior, load_model_from_checkpoint, resolve_device
from vae_cli.training.checkpoint import check_version, load_checkpoint, save_checkpoint
from vae_cli.data import prepare_fixed
from vae_cli.errors import ConfigError, UserError
from vae_cli.evaluation.codes import mean_bits_per_code
from vae_cli.models.base import LatentKind, require_kind
from vae_cli.models.vq import VQVAE
from vae_cli.pictures import decode_images
from vae_cli.training.tblog import RunLogger

log = logging.getLogger("vae_cli")
PRIOR_FILE = "prior.pt"  # written beside the VQ-VAE checkpoint


def require_code_grid(family: type) -> None:
    require_kind("vae-prior", frozenset({LatentKind.CODE_GRID}), family,
                 "vae-prior fits the code prior of a VQ-VAE: it needs a VQ-VAE checkpoint (vae-train model=vqvae)")


@torch.no_grad()
def encode_codes(model: VQVAE, images: torch.Tensor, seed: int, batch_size: int = 1000) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> code grids (N, h, w), one fixed binarization/dequantization."""
    device = next(model.parameters()).device
    x = prepare_fixed(model.likelihood.prepare, images.to(device), seed)
    return torch.cat([model.encode(chunk) for chunk in x.split(batch_size)])


def code_prior_images(model: VQVAE, net, n: int, temperature: float = 1.0) -> torch.Tensor:
    """n samples from the code prior (logits / temperature), decoded: (n, C, H, W) in [0, 1]."""
    return decode_images(model, net.sample(n, model.grid_shape, temperature))


def code_prior_path(vq_ckpt: str | Path) -> Path:
    return Path(vq_ckpt).parent / PRIOR_FILE


def weights_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer: which VQ-VAE weights a code prior was fitted on."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_code_prior(vq_ckpt: str | Path, device: torch.device, model: torch.nn.Module):
    """The prior saved beside a VQ-VAE checkpoint by vae-prior (same version policy as every checkpoint), if it
    was fitted on this checkpoint's weights (`model`): best.pt, last.pt and a resumed run's files share the dir."""
    path = code_prior_path(vq_ckpt)
    if not path.is_file():
        raise UserError(f"no code prior at {path}: run `vae-prior ckpt={vq_ckpt}` first")
    state = load_checkpoint(path)
    check_version(state, path)
    if state.get("vq_weights") != weights_fingerprint(model):
        fitted = state.get("config", {}).get("ckpt", "another checkpoint")
        raise UserError(f"the code prior {path} was fitted on other VQ-VAE weights ({fitted} as it was then), not "
                        f"on {vq_ckpt}: run `vae-prior ckpt={vq_ckpt}` to fit one for it")
    net = build_code_prior(OmegaConf.create(state["config"]), state["config"]["network"]["num_codes"])
    net.load_state_dict(state["model"])
    return net.to(device).eval()


def check_prior_config(cfg: DictConfig) -> None:
    if OmegaConf.is_missing(cfg, "ckpt"):
        raise ConfigError("set ckpt=<path to a VQ-VAE checkpoint>, e.g. ckpt=outputs/<date>/<time>/checkpoints/best.pt")
    for key in ("max_steps", "batch_size", "eval_every", "num_images"):
        if not isinstance(cfg[key], int) or cfg[key] <= 0:
            raise ConfigError(f"{key}={cfg[key]!r} must be a positive integer")


def fit_code_prior(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train the prior; returns {'val_bits_per_code', 'train_bits_per_code', 'uniform_bits_per_code'}."""
    check_prior_config(cfg)
    device, run_dir = resolve_device(cfg.device), Path(run_dir)
    with open_dict(cfg):
        cfg.ckpt = str(resolve_checkpoint(Path(str(cfg.ckpt)).expanduser()))  # a run dir -> its best.pt
    torch.manual_seed(cfg.seed)
    model, data, _, _ = load_model_from_checkpoint(Path(cfg.ckpt), device, cfg.data_dir, check=require_code_grid)
    fingerprint = weights_fingerprint(model)
    train, val = (encode_codes(model, s.images, cfg.seed) for s in (data.train, data.val))
    with open_dict(cfg):
        cfg.network.num_codes = model.posterior.num_codes
    net = build_code_prior(cfg, model.posterior.num_codes).to(device)
    log.info(f"code prior over {tuple(train.shape[1:])} grids of {net.num_codes} codes; {len(train)} train / "
             f"{len(val)} val grids; {sum(p.numel() for p in net.parameters()):,} parameters")
    logger = RunLogger(run_dir, OmegaConf.to_yaml(cfg, resolve=True), {"ckpt": cfg.ckpt})
    try:
        result = _train(cfg, net, model, train, val, logger, run_dir)
    finally:
        logger.close()
    save_checkpoint(Path(cfg.ckpt).parent / PRIOR_FILE, {"model": net.state_dict(), "step": cfg.max_steps,
                    "config": OmegaConf.to_container(cfg, resolve=True), "val": result, "vq_weights": fingerprint})
    log.info(f"done: val NLL {result['val_bits_per_code']:.4f} bits/code (uniform: "
             f"{result['uniform_bits_per_code']:.4f}); prior saved to {Path(cfg.ckpt).parent / PRIOR_FILE}")
    return result


def _train(cfg, net, model, train, val, logger, run_dir: Path) -> dict:
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    gen = torch.Generator(device=train.device).manual_seed(cfg.seed)
    result = {"uniform_bits_per_code": math.log2(net.num_codes)}
    for step in range(1, cfg.max_steps + 1):
        net.train()
        batch = train[torch.randint(len(train), (cfg.batch_size,), generator=gen, device=train.device)]
        loss = net.bits_per_code(batch).mean()  # bits per code position
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            result |= _validate(cfg, net, model, train, val, logger, run_dir, step)
    return result


@torch.no_grad()
def _validate(cfg, net, model, train, val, logger, run_dir: Path, step: int) -> dict:
    net.eval()
    out = {"train_bits_per_code": mean_bits_per_code(net, train[:len(val)]), "val_bits_per_code":
           mean_bits_per_code(net, val)}
    logger.scalars("prior", out, step)
    images = code_prior_images(model, net, cfg.num_images)
    logger.image("samples/code_prior", make_grid(images, nrow=8), step)
    save_image(images, run_dir / "samples_code_prior.png", nrow=8)
    log.info(f"step {step}/{cfg.max_steps}: train {out['train_bits_per_code']:.4f}  "
             f"val {out['val_bits_per_code']:.4f} bits/code")
    return out
