"""Console entry points: thin Hydra shells that find the run dir and call the pure functions."""
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from vae_cli.errors import UserError

CONFIG_PATH = "pkg://vae_cli.configs"


def _train(cfg: DictConfig) -> float:
    from vae_cli.build import run_training

    runtime = HydraConfig.get().runtime
    try:
        val = run_training(cfg, runtime.output_dir, dict(runtime.choices))
    except UserError as e:
        print(f"vae-train: error: {e}", file=sys.stderr)
        sys.exit(2)
    return val["elbo"]


def train_main() -> None:
    """`vae-train`: train a VAE; every config group and key can be overridden on the command line."""
    hydra.main(config_path=CONFIG_PATH, config_name="train", version_base="1.3")(_train)()
