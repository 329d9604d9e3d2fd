"""vae-prior: the VQ-VAE's second stage. Encode the data to code grids with a trained VQ-VAE, fit an
autoregressive prior over them with vae-train's training loop, report its NLL in bits per code, and decode
prior samples to images."""
import hashlib
import logging
import math
from pathlib import Path

import torch
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf, open_dict
from torchvision.utils import make_grid, save_image

from vae_cli.apps.common import resolve_checkpoint
from vae_cli.build import (build_code_prior, build_trainer, load_model_from_checkpoint, resolve_device,
                           resumable_keys)
from vae_cli.training.checkpoint import check_version, load_checkpoint, save_checkpoint, seed_everything
from vae_cli.data import Split, prepare_fixed
from vae_cli.errors import ConfigError, UserError
from vae_cli.evaluation.codes import mean_bits_per_code
from vae_cli.models.base import LatentKind, Metric, require_kind
from vae_cli.models.vq import VQVAE
from vae_cli.pictures import decode_images
from vae_cli.training.knobs import Evaluation
from vae_cli.training.resume import RUN_KEYS, check_resumable, find_checkpoint, wants_resume
from vae_cli.training.task import RandomBatches, Task
from vae_cli.training.trainer import Run

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


class PriorStep(nn.Module):
    """The code prior's training terms: `loss` (B,), the NLL in bits per code position of grids x (B, h, w)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, step: torch.Tensor, y: torch.Tensor | None = None) -> dict:
        return {"loss": self.net.bits_per_code(x)}


class CodePriorTask(Task):
    """vae-prior's task for the training loop: fit `net` to the code grids of a VQ-VAE (`vq`); best.pt by the
    validation bits per code. Batches are drawn with replacement (a tiny grid set may be smaller than a batch)."""

    name = "code_prior"
    validate_at_start = False
    best_metric = Metric("val_bits_per_code", higher_is_better=False)

    def __init__(self, net: nn.Module, vq: VQVAE, train: torch.Tensor, val: torch.Tensor, run_dir: Path):
        self.module, self.vq, self.val, self.run_dir = net, vq, val, run_dir
        self.train = Split(train, torch.zeros(len(train), dtype=torch.long, device=train.device))
        self.num_images = 64

    def to(self, device: torch.device, seed: int, evaluation: Evaluation) -> None:
        self.module.to(device)
        self.train, self.val, self.num_images = self.train.to(device), self.val.to(device), evaluation.num_images

    def batches(self, batch_size: int, device: torch.device, seed: int) -> RandomBatches:
        return RandomBatches(len(self.train), batch_size, device, seed)

    def step_module(self) -> nn.Module:
        return PriorStep(self.module)

    @torch.no_grad()
    def validate(self, step: int, logger) -> dict:
        net, train = self.module, self.train.images
        out = {"train_bits_per_code": mean_bits_per_code(net, train[:len(self.val)]),
               "val_bits_per_code": mean_bits_per_code(net, self.val)}
        logger.scalars("prior", out, step)
        images = code_prior_images(self.vq, net, self.num_images)
        logger.image("samples/code_prior", make_grid(images, nrow=8), step)
        save_image(images, self.run_dir / "samples_code_prior.png", nrow=8)
        return out


def fit_code_prior(cfg: DictConfig, run_dir: str | Path, stop=None) -> dict:
    """Train the prior with the training loop of vae-train (resume, non-finite guard, signals, TensorBoard);
    returns {'val_bits_per_code', 'train_bits_per_code', 'uniform_bits_per_code'} and writes prior.pt beside
    the VQ-VAE checkpoint. `stop` (signals.StopFlag) asks the loop to save and stop."""
    check_prior_config(cfg)
    device, run_dir = resolve_device(cfg.device), Path(run_dir)
    with open_dict(cfg):
        cfg.ckpt = str(resolve_checkpoint(Path(str(cfg.ckpt)).expanduser()))  # a run dir -> its best.pt
    resume = find_checkpoint(run_dir, cfg.resume) if wants_resume(cfg.get("resume")) else None
    trainer = build_trainer(cfg)  # its constructor checks the loop's knobs before any data loads
    seed_everything(cfg.seed)
    model, data, _, _ = load_model_from_checkpoint(Path(cfg.ckpt), device, cfg.data_dir, check=require_code_grid)
    fingerprint = weights_fingerprint(model)
    train, val = (encode_codes(model, s.images, cfg.seed) for s in (data.train, data.val))
    with open_dict(cfg):
        cfg.network.num_codes = model.posterior.num_codes
    net = build_code_prior(cfg, model.posterior.num_codes)
    config = OmegaConf.to_container(cfg, resolve=True)
    if resume:
        check_resumable(*resume, config, RUN_KEYS + resumable_keys(cfg))
    log.info(f"code prior over {tuple(train.shape[1:])} grids of {net.num_codes} codes; {len(train)} train / "
             f"{len(val)} val grids; {sum(p.numel() for p in net.parameters()):,} parameters")
    task = CodePriorTask(net, model, train, val, run_dir)
    result = trainer.fit(task, device, Run(run_dir, config, {"ckpt": cfg.ckpt}), resume=resume and resume[0],
                         stop=stop)
    result = {**result, "uniform_bits_per_code": math.log2(net.num_codes)}
    save_checkpoint(Path(cfg.ckpt).parent / PRIOR_FILE, {"task": task.name, "model": net.state_dict(),
                    "step": cfg.max_steps, "config": config, "val": result, "vq_weights": fingerprint})
    log.info(f"done: val NLL {result['val_bits_per_code']:.4f} bits/code (uniform: "
             f"{result['uniform_bits_per_code']:.4f}); prior saved to {Path(cfg.ckpt).parent / PRIOR_FILE}")
    return result
