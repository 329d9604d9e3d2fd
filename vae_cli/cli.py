"""Console entry points: thin Hydra shells that find the run dir and call the pure functions."""
import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from vae_cli.errors import UserError

CONFIG_PATH = "pkg://vae_cli.configs"
EXIT_USER_ERROR = 2  # bad input, missing data, non-finite training, an unwritable dir: one line on stderr
log = logging.getLogger("vae_cli")


def _fail(e: Exception) -> None:
    print(f"vae-train: error: {e}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


def _train(cfg: DictConfig) -> float:
    from vae_cli.training import distributed, sweeps
    from vae_cli.build import resolve_device
    from vae_cli.apps.train import run_training
    from vae_cli.training.signals import StopRequested, stop_on_signals
    from vae_cli.pictures import val_score
    from vae_cli.validate import as_user_error
    from vae_cli.training.threads import apply_in_job

    sweeps.register_resolvers()
    apply_in_job(cfg.trainer.get("threads"))  # torch's thread count, one log line (training/threads.py)
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
        _fail(user)
    return val_score(val)  # higher is better: the elbo, or -loss for the VQ-VAE


def train_main() -> None:
    """`vae-train`: train a VAE; every config group and key can be overridden on the command line."""
    from vae_cli.training.threads import preset_environment

    preset_environment(sys.argv[1:])  # OMP_* before torch is imported: libgomp reads them at load
    from vae_cli.training.distributed import worker_overrides
    from vae_cli.training.resume import resume_argv
    from vae_cli.training.sweeps import register_resolvers

    try:
        sys.argv = resume_argv(sys.argv)  # resume=RUN_DIR: that run's overrides and dir
    except UserError as e:
        _fail(e)
    register_resolvers()
    sys.argv += worker_overrides(sys.argv[1:])  # torchrun ranks > 0 leave the run dir to rank 0
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
    hydra.main(config_path=CONFIG_PATH, config_name="eval", version_base="1.3")(_eval)()


def sample_main() -> None:
    """`vae-sample ckpt=... mode=...`: prior samples, reconstructions, interpolations, traversals ..."""
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
    hydra.main(config_path=CONFIG_PATH, config_name="code_prior", version_base="1.3")(_prior)()
