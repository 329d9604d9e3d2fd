"""Run by tests/test_distributed.py, under torchrun or alone: train trainer=debug through the real Trainer,
then write the run's parameter spread across ranks to <out>/result_rank<r>.json.

usage: python tests/ddp_worker.py OUT_DIR [NOISE_SEED] [hydra overrides...]
"""
import json
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from vae_cli.training import distributed
from vae_cli.build import build_data, build_model, build_objective, set_run_length
from vae_cli.training.trainer import Run, Trainer
from vae_cli.training.vae_task import VAETask


def main(out: Path, noise_seed: int, overrides: list[str]) -> None:
    with initialize_config_module("vae_cli.configs", version_base="1.3"):
        cfg = compose("train", overrides=["trainer=debug", "device=cpu", *overrides])
    torch.manual_seed(cfg.seed)
    data = build_data(cfg)
    set_run_length(cfg, len(data.train))
    model, objective = build_model(cfg, data.image_shape), build_objective(cfg)
    if noise_seed >= 0:  # same init and batch order, other binarization / z noise
        torch.manual_seed(noise_seed)
    trainer = Trainer.from_knobs(**{k: v for k, v in OmegaConf.to_container(cfg.trainer, resolve=True).items()
                                    if k != "_target_"})
    with distributed.process_group(use_cuda=False):
        val = trainer.fit(VAETask(model, objective, data), torch.device("cpu"), Run(Path(out), {}))
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        spread = (distributed.mean_over_ranks(flat) - flat).abs().max().item()  # 0 iff ranks agree (2 ranks)
        result = {"rank": distributed.rank(), "world": distributed.world_size(), "val_elbo": val["elbo"],
                  "param_spread": spread, "param_norm": flat.norm().item()}
    (out / f"result_rank{result['rank']}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else -1, sys.argv[3:])
