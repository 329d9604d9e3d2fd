"""The step loop: train, log every `log_every`, validate + images + checkpoint every `eval_every`."""
import contextlib
import functools
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from vae_cli.training import distributed, speed
from vae_cli.training.checkpoint import rng_state, save_checkpoint, set_rng_state
from vae_cli.data import ImageData, IndexBatches, prepare_fixed
from vae_cli.errors import ConfigError
from vae_cli.training.meter import Meter, evaluate_split
from vae_cli.training.nonfinite import NonFiniteGuard
from vae_cli.training.progress import check_setting, open_progress
from vae_cli.training.step import StepFunction, capture, graph_obstacle, refusal
from vae_cli.schedules import ConstantLR
from vae_cli.pictures import fixed_labels, make_grid, sample_grids, summary, val_score
from vae_cli.training.resume import prune, step_path
from vae_cli.training.signals import StopRequested
from vae_cli.training.tblog import RunLogger

log = logging.getLogger("vae_cli")
COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class RunState:
    step: int = 0
    best_val_elbo: float = -math.inf
    last_val: dict | None = None


class Trainer:
    def __init__(self, max_steps: int, batch_size: int = 128, lr: float = 1e-3, grad_clip: float | None = None,
                 log_every: int = 100, eval_every: int | None = 1000, eval_batch_size: int = 1000,
                 precision: str = "fp32", num_images: int = 64, seed: int = 0, keep_last: int = 3,
                 nonfinite: str = "raise", max_skips: int = 10, compile: bool = False, compile_mode: str | None = None,
                 tf32: bool = True, channels_last: bool = False, cuda_graph: bool | str = "auto",
                 threads: int | None = None, optimizer=None, lr_schedule=None, progress: str | bool = "auto",
                 progress_every_s: float = 30.0):
        """lr: the base learning rate (configs/optimizer reads it as ${trainer.lr}); optimizer and lr_schedule:
        the `_partial_` nodes of those groups (defaults: Adam at `lr`, constant). threads: applied by the CLI
        before torch starts its thread pool (training/threads.py); recorded here only. eval_every: null = once
        per epoch."""
        if max_steps <= 0 or lr <= 0 or log_every <= 0 or (eval_every or 1) <= 0 or eval_batch_size <= 0:
            raise ConfigError(f"trainer: max_steps={max_steps}, lr={lr}, log_every={log_every}, "
                              f"eval_every={eval_every}, eval_batch_size={eval_batch_size} must all be > 0")
        if precision not in speed.PRECISIONS:
            raise ConfigError(f"trainer.precision={precision!r}; choose one of {', '.join(speed.PRECISIONS)}")
        if compile_mode not in COMPILE_MODES:
            raise ConfigError(f"trainer.compile_mode={compile_mode!r}; choose one of {COMPILE_MODES}")
        if grad_clip is not None and grad_clip <= 0:
            raise ConfigError(f"trainer.grad_clip={grad_clip} must be > 0 (or null for no clipping)")
        if cuda_graph not in (True, False, "auto"):
            raise ConfigError(f"trainer.cuda_graph={cuda_graph!r}; choose auto, true or false")
        self.max_steps, self.batch_size, self.lr, self.grad_clip = max_steps, batch_size, lr, grad_clip
        self.log_every, self.eval_every = log_every, eval_every
        self.eval_batch_size, self.precision, self.num_images, self.seed = eval_batch_size, precision, num_images, seed
        self.keep_last, self.nonfinite, self.max_skips = keep_last, nonfinite, max_skips  # see nonfinite.py
        self.compile, self.compile_mode, self.tf32 = compile, compile_mode, tf32
        self.channels_last, self.cuda_graph, self.threads = channels_last, cuda_graph, threads
        self.optimizer = optimizer or functools.partial(torch.optim.Adam, lr=lr)
        self.lr_schedule = lr_schedule or functools.partial(ConstantLR, total_steps=max_steps)
        self.progress, self.progress_every_s = check_setting(progress), progress_every_s  # progress.py

    def autocast(self):
        """bf16: matmuls and convs in bf16; the heads cast their outputs to fp32, so densities and loss are fp32."""
        if self.precision_used == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False)  # graph-safe: no cast cache
        return contextlib.nullcontext()

    def fit(self, model, objective, data: ImageData, device: torch.device, run_dir: Path, config: dict,
            config_yaml: str, hparams: dict, resume: dict | None = None, stop=None) -> dict:
        """Train `model` on `data` and return the final validation metrics; writes tb/ and checkpoints/.

        resume: a checkpoint to continue from exactly; stop: a flag (signals.StopFlag) read once per step."""
        self.device, self.config, self.ckpt_dir = torch.device(device), config, Path(run_dir) / "checkpoints"
        why = graph_obstacle(self.device, self.compile, distributed.world_size() > 1)
        if self.cuda_graph is True and why:  # fails early (the CLI refuses it before data loads: validate.py)
            raise refusal(why)
        data = self.build(model, objective, data, self.device)
        self.val_x = prepare_fixed(model.likelihood.prepare, data.val.images, self.seed)
        self.val_y = data.val.labels
        self.fixed_y = fixed_labels(self.num_images, data.num_classes, self.device)  # used by conditional models
        state = RunState() if resume is None else self._restore(model, resume)
        purge = None if resume is None else state.step + 1  # TensorBoard drops what the lost run logged later
        self.logger = RunLogger(Path(run_dir) / "tb", config_yaml, hparams, purge_step=purge) \
            if distributed.is_main() else distributed.NullLogger()
        self.eval_every = self.eval_every or max(len(data.train) // self.batch_size, 1)  # null: once per epoch
        self.bar = open_progress(self, model, len(data.train), Path(run_dir), state.step)
        try:
            if resume is None:
                self._validate(model, objective, state)
            self._loop(model, objective, data, state, stop)
        finally:
            self.bar.close()
            self.logger.close()
        return state.last_val

    def build(self, model, objective, data: ImageData, device, capturable: bool | None = None) -> ImageData:
        """Model and data on `device`, the speed knobs, then optimizer, lr schedule, meter, guard, batches and the
        step function (eager until `_first_step` captures it) -> the data on the device. capturable: build the
        step as it is captured (capturable optimizer, device-tensor lr), by default on CUDA; tests build it so
        on the CPU too (tests/test_capture_safety.py)."""
        self.device = torch.device(device)
        self.precision_used, self.precision_why = speed.resolve_precision(self.precision, self.device, objective)
        speed.to_channels_last(model.to(self.device), self.channels_last)
        speed.set_tf32(self.tf32, self.device)
        data = data.to(self.device)
        self._build_step(model, objective, data, self.device.type == "cuda" if capturable is None else capturable)
        return data

    def _build_step(self, model, objective, data: ImageData, capturable: bool) -> None:
        # capturable, lr on the device: no host sync per step, graph or not
        self.opt = speed.fill_optimizer(self.optimizer, list(model.parameters()), self.device,
                                        capturable=capturable, tensor_lr=capturable)
        self.sched = self.lr_schedule(optimizer=self.opt)
        skip = self.nonfinite == "skip"
        self.meter, self.guard = Meter(self.device, skip), NonFiniteGuard(self.nonfinite, self.max_skips, self.device)
        module = speed.compiled(distributed.wrap(speed.TrainStep(model, objective), self.device),
                                self.compile, self.compile_mode)
        self.batches = distributed.shard(IndexBatches(len(data.train), self.batch_size, self.device, self.seed))
        self.step_fn = StepFunction(module, list(model.parameters()), self.opt, self.sched, self.meter, self.guard,
                                    data.train, model.likelihood.prepare, self.grad_clip, self.autocast,
                                    self.batch_size // distributed.world_size(), self.device)
        self.model, self.run_step = model, self._first_step

    def _first_step(self) -> None:
        """Step one runs eagerly (it creates the optimizer state); then the step is captured or stays eager."""
        self.step_fn()
        self.run_step = capture(self.step_fn, self.model, self.device, self.cuda_graph, self.compile,
                                distributed.world_size() > 1)

    def _restore(self, model, ckpt: dict) -> RunState:
        """Model, optimizer, lr schedule, step tensor, batch order, meters and every RNG as they were after
        step ckpt["step"]."""
        model.load_state_dict(ckpt["model"])
        lrs = [g["lr"] for g in self.opt.param_groups]
        self.opt.load_state_dict(ckpt["optimizer"])
        for group, lr in zip(self.opt.param_groups, lrs):  # a device-tensor lr stays the same tensor
            if torch.is_tensor(lr):
                group["lr"] = lr.copy_(torch.as_tensor(group["lr"]))
        self.sched.load_state_dict(ckpt.get("lr_schedule", self.sched.state_dict()))
        self.step_fn.step.fill_(ckpt["step"])
        self.batches.load_state_dict(ckpt["batches"])
        self.meter.load_state_dict(ckpt.get("meter", {}))
        self.guard.load_state_dict(ckpt.get("nonfinite", {}))
        set_rng_state(ckpt["rng"])
        log.info(f"resuming at step {ckpt['step']} (best val elbo {ckpt['best_val_elbo']:.3f})")
        return RunState(ckpt["step"], ckpt["best_val_elbo"], ckpt["val"])

    def _loop(self, model, objective, data: ImageData, state: RunState, stop=None) -> None:
        meter, tick, seen = self.meter, time.perf_counter(), 0
        model.train()
        while state.step < self.max_steps:
            try:
                self._train_step()
            except ValueError:  # torch.distributions refusing NaN parameters left by an earlier non-finite update
                meter.check_finite()  # raise: name that step instead
                raise
            state.step += 1  # the host's count, for the loop only: the step itself reads step_fn.step
            seen += self.batch_size
            self.bar.advance(state.step)
            if state.step % self.log_every == 0 or state.step == self.max_steps:
                self._log_train(meter, objective, state.step, seen, tick)
                meter.reset()
                tick, seen = time.perf_counter(), 0
            if state.step % self.eval_every == 0 or state.step == self.max_steps:
                meter.check_finite()
                self.guard.check(meter.describe_first_bad())
                self._validate(model, objective, state)
                model.train()
                tick = time.perf_counter()  # throughput counts training only
            if stop and state.step < self.max_steps:  # a signal arrived: save this finished step, let the CLI exit
                raise StopRequested(stop.signum, state.step, self._save(model, state, None))

    def _train_step(self) -> None:
        """The next batch's indices into the static buffer, then one step (eager, or the graph replayed)."""
        self.step_fn.idx.copy_(next(self.batches))
        self.run_step()

    def _log_train(self, meter: Meter, objective, step: int, seen: int, tick: float) -> None:
        self.guard.check(meter.describe_first_bad())
        distributed.average_meter(meter)
        means = meter.means()  # the host sync: the clock is read after it, so queued device work counts
        examples_per_sec = seen / (time.perf_counter() - tick)
        knobs = objective.knobs(step - 1)  # beta, temperature ...
        extra = {**knobs, "lr": float(self.opt.param_groups[0]["lr"]), "examples_per_sec": examples_per_sec}
        if self.guard.skip:
            extra["skipped_steps"] = int(self.guard.skipped)
        self.logger.scalars("train", {**means, **extra}, step)
        self.bar.note({**means, "examples_per_sec": examples_per_sec})
        log.info(f"step {step:>7d}/{self.max_steps}  {summary({**means, **knobs})}  {examples_per_sec:8.0f} ex/s")

    @torch.no_grad()
    def _validate(self, model, objective, state: RunState) -> None:
        model.eval()
        val = evaluate_split(model, objective, self.val_x, self.val_y, state.step, self.eval_batch_size, self.seed)
        kl, kl_layers = val.pop("kl_per_dim"), val.pop("kl_per_layer", None)
        self.logger.scalars("val", {**val, **objective.knobs(state.step)}, state.step)
        if kl is not None:
            self.logger.kl_per_dim(kl, state.step)
        if kl_layers is not None:  # hierarchical models: kl_per_layer/layer_1 is next to x
            self.logger.scalars("kl_per_layer", {f"layer_{i + 1}": v for i, v in enumerate(kl_layers.tolist())},
                                state.step)
        self._log_images(model, state.step)
        log.info(f"val @ {state.step}: {summary(val)}")
        state.last_val = val
        if state.step > 0 and distributed.is_main():
            self._save(model, state, val)

    def _fixed_prior_samples(self, model) -> torch.Tensor:
        """The same prior noise (seeded) at every eval, drawn through the current prior (priors can be learned),
        so sample grids are comparable across steps."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(self.seed)
            return model.prior_dist().sample((self.num_images,))

    def _log_images(self, model, step: int) -> None:
        lik = model.likelihood
        for tag, (images, nrow) in sample_grids(model, self._fixed_prior_samples(model), self.fixed_y).items():
            self.logger.image(tag, make_grid(images.float(), nrow=nrow), step)
        x, y = self.val_x[: self.num_images // 2], self.val_y[: self.num_images // 2]
        pairs = torch.stack([x, lik.mean(model(x, y))], dim=1).flatten(0, 1)  # input, reconstruction, ...
        self.logger.image("reconstructions/val", make_grid(pairs.float(), nrow=8), step)

    def _save(self, model, state: RunState, val: dict | None) -> Path:
        """step_N.pt (the newest keep_last kept), last.pt, and best.pt when `val` has the best elbo so far."""
        better = val is not None and val_score(val) > state.best_val_elbo  # VQ-VAE (no elbo): -loss
        state.best_val_elbo = val_score(val) if better else state.best_val_elbo
        ckpt = {"model": model.state_dict(), "optimizer": self.opt.state_dict(), "step": state.step,
                "step_tensor": self.step_fn.step.clone(), "lr_schedule": self.sched.state_dict(),
                "batches": self.batches.state_dict(), "rng": rng_state(), "config": self.config,
                "val": val or state.last_val, "best_val_elbo": state.best_val_elbo,
                "meter": self.meter.state_dict(), "nonfinite": self.guard.state_dict(),
                "precision": self.precision_used}
        last, best = self.ckpt_dir / "last.pt", self.ckpt_dir / "best.pt"
        paths = [step_path(self.ckpt_dir, state.step)] * bool(self.keep_last) + [last] + [best] * better
        save_checkpoint(paths[0], ckpt, tuple(paths[1:]))
        prune(self.ckpt_dir, self.keep_last)
        return last
