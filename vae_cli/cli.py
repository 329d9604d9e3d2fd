"""Console entry points: thin Hydra shells that find the run dir and call the pure functions."""
import contextlib
import logging
import shutil
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from vae_cli.errors import UserError

CONFIG_PATH = "pkg://vae_cli.configs"
EXIT_USER_ERROR = 2  # bad input, missing data, non-finite training, an unwritable dir: one line on stderr
log = logging.getLogger("vae_cli")
STARTED = time.time()  # this process's start: a run dir whose .hydra/ is newer was made by this process


def _fail(e: Exception) -> None:
    print(f"vae-train: error: {e}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


def _check_argv(tool: str, config_name: str) -> None:
    """A misspelled key or group option: one line with the closest names, exit 2, before Hydra composes.
    Also registers the resolvers that fill the --help page (configs/hydra/help/)."""
    from vae_cli.cli_help import register_help_resolvers
    from vae_cli.overrides import check_overrides, register_run_name_resolver

    register_help_resolvers()
    register_run_name_resolver()
    try:
        check_overrides(config_name, sys.argv)
    except UserError as e:
        print(f"{tool}: error: {e}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def _remove_failed_start(run_dir: Path) -> None:
    """A start refused before training (latent_dim=0, missing data ...) leaves a run dir holding only Hydra's
    .hydra/, the log and empty dirs: remove it when this process wrote that .hydra/, so outputs/ lists runs."""
    try:
        entries = list(run_dir.iterdir())
        made_here = (run_dir / ".hydra" / "config.yaml").stat().st_mtime >= STARTED - 1.0
    except OSError:
        return
    leftovers = [p for p in entries if p.name != ".hydra" and p.suffix != ".log" and not (p.is_dir() and
                                                                                          not any(p.iterdir()))]
    if made_here and not leftovers:
        logging.shutdown()  # close train.log before it goes
        shutil.rmtree(run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # outputs/<date>/ too, when this was its only run (never outputs/)
            if run_dir.parent.resolve() != Path.cwd().resolve() and run_dir.parent.stat().st_mtime >= STARTED - 1.0:
                run_dir.parent.rmdir()  # fails when not empty


def _train(cfg: DictConfig) -> float:
    from vae_cli.training import distributed, sweeps
    from vae_cli.build import resolve_device
    from vae_cli.apps.train import run_training
    from vae_cli.training.signals import StopRequested, stop_on_signals
    from vae_cli.pictures import val_score
    from vae_cli.validate import as_user_error

    sweeps.register_resolvers()
    runtime = HydraConfig.get().runtime
    try:
        with stop_on_signals() as stop, distributed.process_group(use_cuda=resolve_device(cfg.device).type == "cuda"):
            val = run_training(cfg, runtime.output_dir, dict(runtime.choices), stop=stop)
    except StopRequested as e:  # SIGTERM / SIGINT: a checkpoint was written; exit 128 + signal number
        log.warning(f"{e}; exit {e.exit_code}; continue with: vae-train resume={runtime.output_dir}")
        sys.exit(e.exit_code)
    except Exception as e:
        if (user := as_user_error(e)) is None:
            raise
        _remove_failed_start(Path(runtime.output_dir))
        _fail(user)
    return val_score(val)  # higher is better: the elbo, or -loss for the VQ-VAE


def train_main() -> None:
    """`vae-train`: train a VAE; every config group and key can be overridden on the command line."""
    from vae_cli.training.distributed import worker_overrides
    from vae_cli.training.resume import resume_argv
    from vae_cli.training.sweeps import register_resolvers

    try:
        sys.argv = resume_argv(sys.argv)  # resume=RUN_DIR: that run's overrides and dir
    except UserError as e:
        _fail(e)
    register_resolvers()
    sys.argv += worker_overrides(sys.argv[1:])  # torchrun ranks > 0 leave the run dir to rank 0
    _check_argv("vae-train", "train")
    hydra.main(config_path=CONFIG_PATH, config_name="train", version_base="1.3")(_train)()


def _run_app(name: str, fn, cfg: DictConfig):
    try:
        return fn(cfg)
    except UserError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        sys.exit(2)


def _eval(cfg: DictConfig) -> None:
    from vae_cli.apps.evaluate import run_eval

    _run_app("vae-eval", run_eval, cfg)


def _sample(cfg: DictConfig) -> None:
    from vae_cli.apps.sample import run_sample

    _run_app("vae-sample", run_sample, cfg)


def eval_main() -> None:
    """`vae-eval ckpt=...`: test ELBO, importance-weighted NLL, collapse report, sample quality."""
    _check_argv("vae-eval", "eval")
    hydra.main(config_path=CONFIG_PATH, config_name="eval", version_base="1.3")(_eval)()


def sample_main() -> None:
    """`vae-sample ckpt=... mode=...`: prior samples, reconstructions, interpolations, traversals ..."""
    _check_argv("vae-sample", "sample")
    hydra.main(config_path=CONFIG_PATH, config_name="sample", version_base="1.3")(_sample)()


def _prior(cfg: DictConfig) -> float:
    from vae_cli.apps.prior import fit_code_prior

    try:
        result = fit_code_prior(cfg, HydraConfig.get().runtime.output_dir)
    except UserError as e:
        print(f"vae-prior: error: {e}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    return result["val_bits_per_code"]


def prior_main() -> None:
    """`vae-prior ckpt=...`: fit the autoregressive code prior of a trained VQ-VAE (its second stage)."""
    _check_argv("vae-prior", "code_prior")
    hydra.main(config_path=CONFIG_PATH, config_name="code_prior", version_base="1.3")(_prior)()
