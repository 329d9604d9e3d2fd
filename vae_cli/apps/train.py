"""vae-train: build everything from the config, check it, train, and return the final validation metrics."""
import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from vae_cli.build import (build_data, build_data_free, build_model, check_compatible, check_config, check_kinds,
                           check_objective, resolve_device, set_num_classes, set_run_length)
from vae_cli.data.cache import check_device_fits
from vae_cli.pictures import summary
from vae_cli.training import distributed
from vae_cli.training.checkpoint import seed_everything
from vae_cli.training.progress import clock
from vae_cli.training.trainer import Run
from vae_cli.training.vae_task import VAETask
from vae_cli.training.resume import check_resumable, find_checkpoint, keep_first_start, wants_resume
from vae_cli.validate import check_device, check_writable, validate_data

log = logging.getLogger("vae_cli")


def hparams(cfg: DictConfig, choices: dict) -> dict:
    """What the HParams tab compares across a sweep: the group choices plus the knobs people sweep."""
    picked = {k: v for k, v in choices.items() if not k.startswith("hydra") and v is not None}
    knobs = {"beta": OmegaConf.select(cfg, "objective.weight.beta"), "latent_dim": cfg.latent_dim, "seed": cfg.seed,
             "free_bits": cfg.objective.get("free_bits", 0.0), "lr": cfg.trainer.lr,
             "batch_size": cfg.trainer.batch_size, "max_steps": cfg.max_steps}
    return {**picked, **knobs}


def run_training(cfg: DictConfig, run_dir: str | Path, choices: dict | None = None, stop=None, ready=None) -> dict:
    """Build everything from `cfg`, train, and return the final validation metrics.

    Every check runs before the first step; `ready(resume)` is called once they all passed, before anything is
    written to the run dir (rundir.RunDir.accept); `stop` (signals.StopFlag) asks the trainer to save and stop."""
    choices, started = choices or {}, time.monotonic()
    check_config(cfg)
    check_kinds(cfg, choices)  # group options that cannot combine, from the declared kinds, before data loads
    device = distributed.rank_device(resolve_device(cfg.device))
    check_device(cfg, device)
    resume = find_checkpoint(Path(run_dir), cfg.resume) if wants_resume(cfg.get("resume")) else None
    if resume:
        keep_first_start(cfg, resume[0])  # e.g. the cyclical schedule's period
    parts = build_data_free(cfg)  # their constructors' checks fire before data loads
    check_writable(Path(run_dir) / "checkpoints")
    seed_everything(cfg.seed)
    data = build_data(cfg)
    check_device_fits(data.nbytes, device)
    validate_data(cfg, len(data.train))
    set_run_length(cfg, len(data.train))
    set_num_classes(cfg, data.num_classes)
    if resume:
        check_resumable(*resume, OmegaConf.to_container(cfg, resolve=True))
    objective, trainer = parts or build_data_free(cfg)
    model = build_model(cfg, data.image_shape)
    check_compatible(model, data, choices)
    check_objective(model, objective, choices)
    n_params = sum(p.numel() for p in model.parameters())
    log.info(f"{data.name}: {len(data.train)} train / {len(data.val)} val images of shape {data.image_shape}; "
             f"model {n_params:,} parameters; {cfg.max_steps} steps on {device}")
    config = OmegaConf.to_container(cfg, resolve=True)
    if ready is not None:
        ready(resume)
    if resume:
        log.info(f"resuming from {resume[1]}")
    val = trainer.fit(VAETask(model, objective, data), device, Run(Path(run_dir), config, hparams(cfg, choices)),
                      resume=resume and resume[0], stop=stop)
    log.info(f"done: val {summary(val)} after {cfg.max_steps} steps in {clock(time.monotonic() - started)}; "
             f"run dir {Path(run_dir).resolve()}; best checkpoint {Path(run_dir).resolve() / 'checkpoints' / 'best.pt'}")
    return val
