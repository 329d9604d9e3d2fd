"""What validating once per epoch costs: time in Trainer._validate (val ELBO on 5k images, KL per dim, image
grids, checkpoint) against time in training steps, measured side by side in one process on MNIST defaults.

    OMP_NUM_THREADS=1 python scripts/validation_cost.py [epochs] [extra overrides ...]
"""
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from vae_cli.apps.train import run_training


def main() -> None:
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    torch.set_num_threads(1)
    with initialize_config_module("vae_cli.configs", version_base="1.3"):
        cfg = compose("train", overrides=[f"max_epochs={epochs}", "device=cpu", "trainer.progress=false",
                                          *sys.argv[2:]])
    from vae_cli.training import trainer as trainer_module

    spent = {"_validate": 0.0, "_train_step": 0.0}
    calls = {k: 0 for k in spent}
    for name in spent:
        original = getattr(trainer_module.Trainer, name)

        def timed(self, *args, _original=original, _name=name, **kwargs):
            tick = time.perf_counter()
            out = _original(self, *args, **kwargs)
            spent[_name] += time.perf_counter() - tick
            calls[_name] += 1
            return out

        setattr(trainer_module.Trainer, name, timed)
    with tempfile.TemporaryDirectory() as run_dir:
        run_training(cfg, Path(run_dir))
    per_val = spent["_validate"] / calls["_validate"]
    per_epoch = spent["_train_step"] / calls["_train_step"] * (calls["_train_step"] / epochs)
    print(f"{calls['_validate']} validations: {per_val:.2f} s each; {calls['_train_step']} steps: "
          f"{per_epoch:.1f} s per epoch; one validation per epoch costs {100 * per_val / per_epoch:.1f}% "
          f"of the training time")


if __name__ == "__main__":
    main()
