"""torchrun + DDP on CPU (gloo, 2 processes): ranks stay identical, the loss follows the 1-process run."""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vae_cli.apps.train import run_training
from vae_cli.data import IndexBatches
from vae_cli.training.distributed import RankSlice
from vae_cli.errors import ConfigError

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
WORKER = Path(__file__).with_name("ddp_worker.py")


def torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*TORCHRUN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def scalars(run_dir: Path, tag: str) -> list[float]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [e.value for e in events.Scalars(tag)]


def test_rank_slices_partition_the_global_batch():
    sliced = [RankSlice(IndexBatches(100, 32, torch.device("cpu"), seed=3), r, 2) for r in range(2)]
    whole = IndexBatches(100, 32, torch.device("cpu"), seed=3)
    for _ in range(7):  # crosses two epoch boundaries
        assert torch.equal(torch.cat([next(s) for s in sliced]), next(whole))
    assert sliced[1].state_dict()["pos"] == whole.state_dict()["pos"]


def test_global_batch_must_divide_over_ranks():
    with pytest.raises(ConfigError, match="batch_size=30"):
        RankSlice(IndexBatches(100, 30, torch.device("cpu"), seed=0), 0, 4)


@pytest.mark.slow
def test_ddp_ranks_hold_identical_parameters(tmp_path):
    """Each rank trains on its own half of every batch; only averaged gradients keep them equal."""
    torchrun([str(WORKER), str(tmp_path), "-1", "max_steps=8"], tmp_path)
    results = [json.loads((tmp_path / f"result_rank{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in results] == [2, 2]
    assert results[0]["param_spread"] == 0.0 and results[1]["param_spread"] == 0.0
    assert results[0]["param_norm"] == results[1]["param_norm"]


@pytest.mark.slow
def test_torchrun_cli_follows_the_one_process_loss(tmp_path, cfg_factory):
    """2 processes x 16 examples vs 1 process x 32 (the same global batches, same init). They differ only in
    the binarization and z noise of rank 1's half: two 1-process runs that differ only in that noise differ by
    up to ~1.1 nats (0.2%) in these train/loss windows and ~4 nats (0.9%) in the final val ELBO (measured),
    while the loss falls by ~47 nats (9%) over the run. Tolerances: 1% per window, 2% for val."""
    single_dir = tmp_path / "single"
    proc = torchrun(["-m", "vae_cli", "trainer=debug", "device=cpu"], tmp_path)  # run dir: outputs/<date>/<time>
    run_dirs = list((tmp_path / "outputs").glob("*/*"))
    assert len(run_dirs) == 1, run_dirs  # rank 1's Hydra dir went to scratch
    ddp_dir = run_dirs[0]
    run_training(cfg_factory("trainer=debug", "device=cpu"), single_dir)
    ddp, single = scalars(ddp_dir, "train/loss"), scalars(single_dir, "train/loss")
    assert len(ddp) == len(single) == 6 and single[0] - single[-1] > 30
    for a, b in zip(ddp, single):
        assert abs(a - b) < 0.01 * abs(b), (ddp, single)
    val_ddp, val_single = scalars(ddp_dir, "val/elbo")[-1], scalars(single_dir, "val/elbo")[-1]
    assert abs(val_ddp - val_single) < 0.02 * abs(val_single)
    assert {"best.pt", "last.pt"} <= {p.name for p in (ddp_dir / "checkpoints").iterdir()}
    assert not list((Path(tempfile.gettempdir()) / "vae-cli-rank1").rglob("*.pt"))  # rank 1 saves nothing
    log = (ddp_dir / "train.log").read_text() + proc.stdout + proc.stderr
    assert log.count("step      30/30") == 2  # rank 0's line, in train.log and on the console: not rank 1's
