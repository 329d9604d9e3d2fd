"""The one training loop: steps, train scalars every `log_every`, validation + pictures + checkpoint every
`eval_every`, the non-finite guard, signals, progress and resume. What is trained comes from a `Task`
(training/task.py): vae-train's VAETask, vae-prior's CodePriorTask."""
import functools
import inspect
import logging
import time
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf

from vae_cli.training import distributed, knobs, speed
from vae_cli.training.checkpoint import rng_state, save_checkpoint, set_rng_state
from vae_cli.training.knobs import Checkpointing, Evaluation, Loop, Reporting, Speed
from vae_cli.training.meter import Meter
from vae_cli.training.nonfinite import NonFiniteGuard
from vae_cli.training.progress import PERIODIC, Throughput, open_progress
from vae_cli.training.step import StepFunction, capture, graph_obstacle, refusal
from vae_cli.training.task import Task
from vae_cli.schedules import ConstantLR
from vae_cli.pictures import summary
from vae_cli.training.resume import prune, step_path
from vae_cli.training.signals import StopRequested
from vae_cli.training.tblog import RunLogger

log = logging.getLogger("vae_cli")


@dataclass
class Run:
    """Where a run writes (TensorBoard events, checkpoints/) and what it records: the resolved config (in every
    checkpoint and as text in TensorBoard) and the HParams tab's values."""

    dir: Path
    config: dict
    hparams: dict = field(default_factory=dict)


@dataclass
class RunState:
    step: int = 0
    best: float | None = None  # the best value so far of the task's best_metric
    last_val: dict | None = None


class Trainer:
    def __init__(self, loop: Loop, reporting: Reporting = Reporting(), evaluation: Evaluation = Evaluation(),
                 checkpointing: Checkpointing = Checkpointing(), speed: Speed = Speed(), optimizer=None,
                 lr_schedule=None):
        """optimizer and lr_schedule: the `_partial_` nodes of those groups (defaults: Adam at loop.lr, constant);
        the parameters, the device options and the optimizer are filled by `build` once the module is on its
        device."""
        self.loop, self.reporting, self.evaluation = loop, reporting, evaluation
        self.checkpointing, self.speed = checkpointing, speed
        self.optimizer = optimizer or functools.partial(torch.optim.Adam, lr=loop.lr)
        self.lr_schedule = lr_schedule or functools.partial(ConstantLR, total_steps=loop.max_steps)
        self.device = torch.device("cpu")
        self.task = self.model = self.opt = self.sched = self.meter = self.guard = None  # set by `build`
        self.batches = self.step_fn = self.run_step = None
        self.eval_every, self.ckpt_dir, self.config = evaluation.eval_every, None, {}  # set by `fit`
        self.logger, self.bar = distributed.NullLogger(), None
        self.earlier_s, self.started = 0.0, time.monotonic()  # the run's wall clock (run_seconds), set by fit
        self.precision_used, self.precision_why = speed.precision, ""  # resolved by `build` (auto: per device)

    @classmethod
    def from_knobs(cls, optimizer=None, lr_schedule=None, **flat) -> "Trainer":
        """The trainer from the flat keys users type (configs/trainer: trainer.lr, trainer.eval_every ...)."""
        return cls(**knobs.split(flat), optimizer=optimizer, lr_schedule=lr_schedule)

    from_knobs.__func__.__signature__ = knobs.signature(  # the flat keys, for the config's key check (build.py)
        inspect.Parameter("cls", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        *(inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for n in ("optimizer", "lr_schedule")))

    @property
    def max_steps(self) -> int:
        return self.loop.max_steps

    def autocast(self):
        """bf16: matmuls and convs in bf16; the heads cast their outputs to fp32, so densities and loss are fp32."""
        if self.precision_used == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False)  # graph-safe: no cast cache
        return contextlib.nullcontext()

    def fit(self, task: Task, device: torch.device, run: Run, resume: dict | None = None, stop=None) -> dict:
        """Train `task` and return its final validation metrics; writes TensorBoard events (in run.dir itself, so
        TensorBoard names the run by its dir) and checkpoints/.

        resume: a checkpoint to continue from exactly; stop: a flag (signals.StopFlag) read once per step."""
        self.device, self.config, self.ckpt_dir = torch.device(device), run.config, Path(run.dir) / "checkpoints"
        self.earlier_s, self.started = float((resume or {}).get("elapsed_s", 0.0)), time.monotonic()
        why = graph_obstacle(self.device, self.speed.compile, distributed.world_size() > 1)
        if self.speed.cuda_graph is True and why:  # fails early (the CLI refuses it before data loads: validate.py)
            raise refusal(why)
        self.build(task, self.device)
        passes = self.max_steps * self.loop.batch_size / len(task.train)
        if distributed.is_main() and (note := self.sched.budget_note(passes)):
            log.warning(note)
        state = RunState() if resume is None else self._restore(resume)
        purge = None if resume is None else state.step + 1  # TensorBoard drops what the lost run logged later
        self.logger = RunLogger(Path(run.dir), OmegaConf.to_yaml(run.config), run.hparams, purge_step=purge) \
            if distributed.is_main() else distributed.NullLogger()
        self.eval_every = self.evaluation.eval_every or max(len(task.train) // self.loop.batch_size, 1)  # null: once per epoch
        self.bar = open_progress(self, task.module, len(task.train), Path(run.dir), state.step)
        try:
            if resume is None and task.validate_at_start and self.evaluation.eval_at_start:
                self._validate(state)
            self._loop(state, stop)
        except BaseException:
            self.bar.close(interrupted=True)
            raise
        finally:
            self.bar.close()
            self.logger.close()
        return state.last_val

    def build(self, task: Task, device, capturable: bool | None = None) -> None:
        """Module and data on `device`, the speed knobs, then optimizer, lr schedule, meter, guard, batches and the
        step function (eager until `_first_step` captures it). capturable: build the step as it is captured
        (capturable optimizer, device-tensor lr), by default on CUDA; tests build it so on the CPU too
        (tests/test_capture_safety.py)."""
        self.device, self.task, self.model = torch.device(device), task, task.module
        self.precision_used, self.precision_why = speed.resolve_precision(self.speed.precision, self.device,
                                                                          task.objective)
        task.to(self.device, self.loop.seed, self.evaluation)
        speed.to_channels_last(task.module, self.speed.channels_last)
        speed.set_tf32(self.speed.tf32, self.device)
        self._build_step(task, self.device.type == "cuda" if capturable is None else capturable)

    def _build_step(self, task: Task, capturable: bool) -> None:
        # capturable, lr on the device: no host sync per step, graph or not
        loop, params = self.loop, list(task.module.parameters())
        self.opt = speed.fill_optimizer(self.optimizer, params, self.device, capturable=capturable,
                                        tensor_lr=capturable)
        self.sched = self.lr_schedule(optimizer=self.opt)
        self.meter = Meter(self.device, loop.nonfinite == "skip")
        self.guard = NonFiniteGuard(loop.nonfinite, loop.max_skips, self.device)
        module = speed.compiled(distributed.wrap(task.step_module(), self.device), self.speed.compile,
                                self.speed.compile_mode)
        self.batches = distributed.shard(task.batches(loop.batch_size, self.device, loop.seed))
        self.step_fn = StepFunction(module, params, self.opt, self.sched, self.meter, self.guard, task.train,
                                    task.prepare, loop.grad_clip, self.autocast,
                                    loop.batch_size // distributed.world_size(), self.device)
        self.run_step = self._first_step

    def _first_step(self) -> None:
        """Step one runs eagerly (it creates the optimizer state); then the step is captured or stays eager."""
        self.step_fn()
        self.run_step = capture(self.step_fn, self.model, self.device, self.speed.cuda_graph, self.speed.compile,
                                distributed.world_size() > 1)

    def _restore(self, ckpt: dict) -> RunState:
        """Module, optimizer, lr schedule, step tensor, batch order, meters and every RNG as they were after
        step ckpt["step"]."""
        self.model.load_state_dict(ckpt["model"])
        lrs = [g["lr"] for g in self.opt.param_groups]
        self.opt.load_state_dict(ckpt["optimizer"])
        for group, lr in zip(self.opt.param_groups, lrs):  # a device-tensor lr stays the same tensor
            if torch.is_tensor(lr):
                group["lr"] = lr.copy_(torch.as_tensor(group["lr"]))
        self.sched.load_state_dict(ckpt["lr_schedule"])
        self.step_fn.step.fill_(ckpt["step"])
        self.batches.load_state_dict(ckpt["batches"])
        self.meter.load_state_dict(ckpt["meter"])
        self.guard.load_state_dict(ckpt["nonfinite"])
        set_rng_state(ckpt["rng"])
        best = ckpt["best"]["value"]
        log.info(f"resuming at step {ckpt['step']} (best val {ckpt['best']['metric']} "
                 f"{'none yet' if best is None else f'{best:.3f}'})")
        return RunState(ckpt["step"], best, ckpt["val"])

    def _loop(self, state: RunState, stop=None) -> None:
        meter, window = self.meter, Throughput()
        every, last = self.reporting.log_every, self.max_steps
        self.model.train()
        while state.step < last:
            try:
                self._train_step()
            except ValueError:  # torch.distributions refusing NaN parameters left by an earlier non-finite update
                meter.check_finite()  # raise: name that step instead
                raise
            state.step += 1  # the host's count, for the loop only: the step itself reads step_fn.step
            window.seen += self.loop.batch_size
            self.bar.advance(state.step)
            if state.step % every == 0 or state.step == last:
                self._log_train(state.step, window)
                meter.reset()
                window.reset()
            if state.step % self.eval_every == 0 or state.step == last:
                meter.check_finite()  # a host sync: the steps queued so far count as training time
                self.guard.check(meter.describe_first_bad())
                window.pause()
                self._validate(state)
                self.model.train()
                window.resume()
            if stop and state.step < last:  # a signal arrived: save this finished step, let the CLI exit
                raise StopRequested(stop.signum, state.step, self._save(state, None))

    def _train_step(self) -> None:
        """The next batch's indices into the static buffer, then one step (eager, or the graph replayed)."""
        self.step_fn.idx.copy_(next(self.batches))
        self.run_step()

    def _log_train(self, step: int, window: Throughput) -> None:
        meter = self.meter
        self.guard.check(meter.describe_first_bad())
        distributed.average_meter(meter)
        means = meter.means()  # the host sync: the clock is read after it, so queued device work counts
        examples_per_sec = window.rate()
        knobs = self.task.knobs(step - 1)  # beta, temperature ...
        extra = {**knobs, "lr": float(self.opt.param_groups[0]["lr"]), "examples_per_sec": examples_per_sec}
        if self.guard.skip:
            extra["skipped_steps"] = int(self.guard.skipped)
        self.logger.scalars("train", {**means, **extra}, step)
        self.bar.note({**means, "examples_per_sec": examples_per_sec})
        log.info(f"step {step:>7d}/{self.max_steps}  {summary({**means, **knobs})}  {examples_per_sec:8.0f} ex/s",
                 extra=PERIODIC)

    @torch.no_grad()
    def _validate(self, state: RunState) -> None:
        self.model.eval()
        val = self.task.validate(state.step, self.logger)
        log.info(f"val @ {state.step}: {summary(val)}")
        state.last_val = val
        if state.step > 0 and distributed.is_main():
            self._save(state, val)

    def run_seconds(self) -> float:
        """Wall seconds of the earlier segments (up to the checkpoint this one resumed) plus this segment's."""
        return self.earlier_s + time.monotonic() - self.started

    def _save(self, state: RunState, val: dict | None) -> Path:
        """step_N.pt (the newest keep_last kept), last.pt, and best.pt when `val` has the best value so far of the
        task's best_metric."""
        metric = self.task.best_metric
        better = val is not None and metric.better(val[metric.name], state.best)
        state.best = val[metric.name] if better else state.best
        ckpt = {"task": self.task.name, "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "step": state.step, "step_tensor": self.step_fn.step.clone(), "lr_schedule": self.sched.state_dict(),
                "batches": self.batches.state_dict(), "rng": rng_state(), "config": self.config,
                "val": val or state.last_val, "best": {"metric": metric.name, "value": state.best},
                "meter": self.meter.state_dict(), "nonfinite": self.guard.state_dict(),
                "elapsed_s": self.run_seconds(),  # the whole run's wall time so far, every resumed segment included
                "precision": self.precision_used}
        last, best = self.ckpt_dir / "last.pt", self.ckpt_dir / "best.pt"
        keep = self.checkpointing.keep_last
        paths = [step_path(self.ckpt_dir, state.step)] * bool(keep) + [last] + [best] * better
        save_checkpoint(paths[0], ckpt, tuple(paths[1:]))
        prune(self.ckpt_dir, keep)
        return last
