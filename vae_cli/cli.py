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
    from vae_cli.build import run_training
    from vae_cli.signals import StopRequested, stop_on_signals
    from vae_cli.validate import as_user_error

    runtime = HydraConfig.get().runtime
    try:
        with stop_on_signals() as stop:
            val = run_training(cfg, runtime.output_dir, dict(runtime.choices), stop=stop)
    except StopRequested as e:  # SIGTERM / SIGINT: a checkpoint was written; exit 128 + signal number
        log.warning(f"{e}; exit {e.exit_code}; continue with: vae-train resume={runtime.output_dir}")
        sys.exit(e.exit_code)
    except Exception as e:
        if (user := as_user_error(e)) is None:
            raise
        _fail(user)
    return val["elbo"]


def train_main() -> None:
    """`vae-train`: train a VAE; every config group and key can be overridden on the command line."""
    from vae_cli.resume import resume_argv

    try:
        sys.argv = resume_argv(sys.argv)  # resume=RUN_DIR: that run's overrides and dir
    except UserError as e:
        _fail(e)
    hydra.main(config_path=CONFIG_PATH, config_name="train", version_base="1.3")(_train)()
