"""Console entry points: thin Hydra shells that find the run dir and call the pure functions."""
import logging
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from vae_cli import gc_pause
from vae_cli.errors import UserError

CONFIG_PATH = "pkg://vae_cli.configs"
EXIT_USER_ERROR = 2  # bad input, missing data, non-finite training, an unwritable dir: one line on stderr
log = logging.getLogger("vae_cli")


def _fail(e: Exception) -> None:
    print(f"vae-train: error: {e}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


def _check_line(tool: str, config_name: str, line) -> None:
    """A misspelled key or group option: one line with the closest names, exit 2, before Hydra composes.
    Also registers the resolvers that fill the --help page (configs/hydra/help/)."""
    from vae_cli.cli_help import register_help_resolvers
    from vae_cli.overrides import check_overrides
    from vae_cli.run_paths import register_run_name_resolver

    register_help_resolvers()
    register_run_name_resolver()
    sys.argv = line.argv  # what Hydra composes: the line as read (paths quoted), resumed and for this rank
    try:
        check_overrides(config_name, line)
    except UserError as e:
        print(f"{tool}: error: {e}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def _read_line():
    """sys.argv, parsed once (command_line.py): every check before Hydra reads this view."""
    from vae_cli.command_line import CommandLine

    return CommandLine.parse(sys.argv)


def _train(cfg: DictConfig, existed: frozenset = frozenset()) -> float:
    from vae_cli.training import distributed, rundir, sweeps
    from vae_cli.build import resolve_device
    from vae_cli.apps.train import run_training
    from vae_cli.training.signals import Interrupted, StopRequested, stop_on_signals
    from vae_cli.pictures import val_score
    from vae_cli.training.threads import apply_in_job
    from vae_cli.training.progress import terminal_logging

    sweeps.register_resolvers()
    hydra_cfg = HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    try:
        with rundir.claim(run_dir, cfg, hydra_cfg, main=rundir.owns_run_dir(), existed=existed) as claimed, \
                stop_on_signals() as stop, distributed.process_group(use_cuda=resolve_device(cfg.device).type == "cuda"), \
                terminal_logging(cfg.trainer.get("progress", "auto"), distributed.is_main()):  # short lines under a bar
            threads = apply_in_job(cfg.trainer.get("threads"))  # torch's thread count, said once the run starts

            def ready(resume) -> None:  # every check passed: the run dir is written, train.log is open
                claimed.accept(resume)
                log.info(threads)
            try:
                val = run_training(cfg, run_dir, dict(hydra_cfg.runtime.choices), stop=stop, ready=ready)
            except StopRequested as e:  # SIGTERM / SIGINT: a checkpoint was written; logged while train.log is open
                log.warning(f"{e}; exit {e.exit_code}; continue with: vae-train resume={run_dir}")
                raise
    except StopRequested as e:
        _exit_quietly(e.exit_code)  # 128 + signal number
    except Interrupted as e:  # Ctrl-C twice: one line, not a traceback
        print(f"vae-train: {e}; the checkpoints already written are intact: continue with vae-train "
              f"resume={run_dir}", file=sys.stderr)
        _exit_quietly(e.exit_code)
    except Exception as e:
        return _train_failed(e, run_dir, hydra_cfg)
    sweeps.record_job(hydra_cfg, None)
    return val_score(val)  # higher is better: the elbo, or -loss for the VQ-VAE


def _exit_quietly(code: int) -> None:
    """Exit after a stop signal; more Ctrl-C while Hydra and the loggers shut down would only print tracebacks."""
    import signal

    from vae_cli.training.signals import HANDLED

    for s in HANDLED:
        signal.signal(s, signal.SIG_IGN)
    sys.exit(code)


def _train_failed(e: Exception, run_dir: str, hydra_cfg) -> float:
    """A single run: one line and exit 2 for a user's mistake or a full disk, else the traceback. In a sweep
    every failure is this job's alone: one line, recorded for the summary, and the sweep goes on."""
    from hydra.types import RunMode
    from vae_cli.training import sweeps
    from vae_cli.validate import as_user_error, disk_error

    user = as_user_error(e) or disk_error(e, run_dir)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        if user is None:
            raise e
        _fail(user)
    message = sweeps.record_job(hydra_cfg, e if user is None else user, internal=user is None)
    print(f"vae-train: error: {message}", file=sys.stderr)
    return float("nan")  # a failed trial for sweepers that read the value (optuna)


def _hydra_main(config_name: str, fn) -> None:
    """Hydra's main over `fn`; a reader that closes the pipe early (`vae-train --help | head`) ends it quietly.
    The garbage collector is paused until the app's work begins (gc_pause.py)."""
    gc_pause.pause()
    try:
        hydra.main(config_path=CONFIG_PATH, config_name=config_name, version_base="1.3")(fn)()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error from the exit's flush
        sys.exit(1)
    finally:
        gc_pause.resume()


def _check_dir(line) -> frozenset:
    """hydra.run.dir / hydra.sweep.dir typed on the command line must be creatable: one line, not Hydra's
    traceback. Returns the dirs on its path that exist now (a refused start keeps them)."""
    from vae_cli.command_line import typed_dir
    from vae_cli.training.rundir import check_creatable, existing_dirs

    key, value = typed_dir(line)
    existed = existing_dirs(value)  # before anything is created
    if value is not None:
        check_creatable(value, key)
    return existed


def train_main() -> None:
    """`vae-train`: train a VAE; every config group and key can be overridden on the command line."""
    from vae_cli.command_line import with_resumed_run
    from vae_cli.training.threads import preset_environment

    line = _read_line()
    try:
        line = with_resumed_run(line)  # resume=RUN_DIR: that run's overrides and dir
    except UserError as e:
        _fail(e)
    preset_environment(line)  # OMP_* before torch is imported: libgomp reads them at load
    from vae_cli.training import distributed, sweeps

    try:
        existed = _check_dir(line)
    except UserError as e:
        _fail(e)
    line = line.plus(*distributed.worker_overrides(line))  # torchrun ranks > 0 leave the run dir to rank 0
    sweeps.register_resolvers()
    _check_line("vae-train", "train", line)

    finished = []  # a run ended in this process (not --help, not a joblib launcher's parent)

    def train(cfg: DictConfig) -> float:
        value = _train(cfg, existed)
        finished.append(True)
        return value
    _hydra_main("train", train)
    if finished:  # everything is written: leave without tearing down torch's modules
        exit_now(0)


def _interruptible(tool: str, main, unsaved: str) -> None:
    """Run `main`; Ctrl-C (SIGINT) anywhere in it is one line on stderr and exit 130, not a traceback.
    `unsaved`: what an interrupted run has not written."""
    import signal

    try:
        main()
    except KeyboardInterrupt:
        print(f"{tool}: interrupted by SIGINT before it finished; {unsaved}", file=sys.stderr)
        _exit_quietly(128 + signal.SIGINT)


def exit_now(code: int) -> None:
    """End the process once everything is written: log handlers flushed and closed, atexit handlers run, then
    os._exit, skipping the interpreter's teardown of torch's thousands of modules (about 0.6x the time of
    `import torch` at the end of every run, docs/performance.md)."""
    import atexit

    logging.shutdown()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run_app(name: str, fn, cfg: DictConfig):
    from vae_cli.versions import import_torchvision

    try:
        import_torchvision()  # the pictures need it: a torch/torchvision mismatch is one line here
        gc_pause.resume()
        return fn(cfg)
    except UserError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        sys.exit(2)


def _eval(cfg: DictConfig) -> None:
    _run_app("vae-eval", lambda c: _app("evaluate").run_eval(c), cfg)


def _sample(cfg: DictConfig) -> None:
    _run_app("vae-sample", lambda c: _app("sample").run_sample(c), cfg)


def _app(name: str):
    """vae_cli.apps.<name>, imported once torchvision is known to work (its modules import it)."""
    import importlib

    return importlib.import_module(f"vae_cli.apps.{name}")


def eval_main() -> None:
    """`vae-eval ckpt=...`: test ELBO, importance-weighted NLL, collapse report, sample quality."""
    def main() -> None:
        _check_line("vae-eval", "eval", _read_line())
        _hydra_main("eval", _eval)

    _interruptible("vae-eval", main, "metrics.json and report.txt are written at the end")


def sample_main() -> None:
    """`vae-sample ckpt=... mode=...`: prior samples, reconstructions, interpolations, traversals ..."""
    def main() -> None:
        _check_line("vae-sample", "sample", _read_line())
        _hydra_main("sample", _sample)

    _interruptible("vae-sample", main, "the pictures are written at the end")


def _prior(cfg: DictConfig) -> float:
    from vae_cli.training.signals import Interrupted, StopRequested, stop_on_signals
    from vae_cli.versions import import_torchvision

    run_dir = HydraConfig.get().runtime.output_dir
    try:
        import_torchvision()  # the sample grids need it: a torch/torchvision mismatch is one line here
        gc_pause.resume()
        with stop_on_signals() as stop:
            result = _app("prior").fit_code_prior(cfg, run_dir, stop=stop)
    except StopRequested as e:  # SIGTERM / SIGINT: a checkpoint was written
        log.warning(f"{e}; exit {e.exit_code}; continue with: vae-prior resume={run_dir}")
        _exit_quietly(e.exit_code)
    except Interrupted as e:
        print(f"vae-prior: {e}; continue with vae-prior resume={run_dir}", file=sys.stderr)
        _exit_quietly(e.exit_code)
    except UserError as e:
        print(f"vae-prior: error: {e}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    return result["val_bits_per_code"]


def prior_main() -> None:
    """`vae-prior ckpt=...`: fit the autoregressive code prior of a trained VQ-VAE (its second stage)."""
    from vae_cli.command_line import with_resumed_run

    def main() -> None:
        try:
            line = with_resumed_run(_read_line())  # resume=RUN_DIR: that run's overrides and dir
        except UserError as e:
            print(f"vae-prior: error: {e}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        _check_line("vae-prior", "code_prior", line)
        _hydra_main("code_prior", _prior)

    _interruptible("vae-prior", main, "nothing was trained (once training runs, Ctrl-C saves a checkpoint)")
