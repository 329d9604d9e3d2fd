"""vae-train: build everything from the config, check it, train, and return the final validation metrics."""
import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from vae_cli import gc_pause
from vae_cli.build import build_data, build_model
from vae_cli.data.cache import check_device_fits
from vae_cli.pictures import summary
from vae_cli.plan import fit_to_data, make_plan
from vae_cli.training.checkpoint import seed_everything
from vae_cli.training.progress import clock
from vae_cli.training.trainer import Run
from vae_cli.training.vae_task import VAETask
from vae_cli.validate import check_likelihood

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
    started = time.monotonic()
    plan = make_plan(cfg, Path(run_dir), choices)  # every check that needs no data; the data-free parts
    gc_pause.resume()  # the imports are done: collect again before the data's decoding workers fork
    seed_everything(cfg.seed)
    data = build_data(cfg)
    check_device_fits(data.nbytes, plan.device)
    objective, trainer = fit_to_data(plan, data)
    model = build_model(cfg, data.image_shape)
    check_likelihood(model, data, plan.choices)
    log.info(f"data: {data.name}, {len(data.train):,} train / {len(data.val):,} val images of "
             f"{'x'.join(map(str, data.image_shape))}")
    if objective.weight is not None and (note := objective.weight.start_note(cfg.max_steps)):
        log.warning(note)  # e.g. a KL warm-up longer than the run
    if ready is not None:
        ready(plan.resume)
    if plan.resume:
        log.info(f"resuming from {plan.resume[1]}")
    run = Run(Path(run_dir), OmegaConf.to_container(cfg, resolve=True), hparams(cfg, plan.choices))
    val = trainer.fit(VAETask(model, objective, data), plan.device, run, resume=plan.resume and plan.resume[0],
                      stop=stop)
    log.info(done_line(cfg.max_steps, trainer.earlier_s, time.monotonic() - started, plan.resume, val))
    log.info(f"best checkpoint: {Path(run_dir).resolve() / 'checkpoints' / 'best.pt'}")
    return val


def done_line(steps: int, earlier_s: float, segment_s: float, resume, val: dict) -> str:
    """The run's steps and wall time (after a resume: the whole run's, earlier segments up to the checkpoint
    resumed included, then this segment's) and its final validation."""
    segment = f" (this segment {clock(segment_s)}, from step {resume[0]['step']:,})" if resume else ""
    return f"done: {steps:,} steps in {clock(earlier_s + segment_s)}{segment}; val {summary(val)}"
