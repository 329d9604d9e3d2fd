"""Data parallel training under torchrun: one process per device, gradients averaged by DDP.

Every rank builds the same model from the same seed, draws the same global permutation of the
training set and trains on its slice of each global batch; DistributedDataParallel averages the
gradients, so one step sees the whole global batch (`trainer.batch_size`) as one process would.
Metrics are averaged across ranks when they are logged; rank 0 alone writes TensorBoard, checkpoints
and log lines. Outside torchrun every function here is a no-op.
"""
from __future__ import annotations  # torch is imported by the functions that use it: the CLI's argument
                                    # checks (worker_overrides) run before torch loads
import contextlib
import logging
import os

from vae_cli.errors import ConfigError

log = logging.getLogger("vae_cli")


def launched_by_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"))


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


@contextlib.contextmanager
def process_group(use_cuda: bool):
    """Join the torchrun job for the block (nccl on CUDA, gloo on CPU); a no-op outside torchrun."""
    import torch
    import torch.distributed as dist

    if not launched_by_torchrun() or dist.is_initialized():
        yield
        return
    if use_cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if use_cuda else "gloo")
    if not is_main():
        log.setLevel(logging.WARNING)  # one set of log lines: rank 0's
    try:
        yield
    finally:
        dist.destroy_process_group()


def rank_device(device: torch.device) -> torch.device:
    """Under torchrun each rank drives the CUDA device of its LOCAL_RANK."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized() and device.type == "cuda":
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


class RankSlice:
    """This rank's contiguous slice of every global index batch; the global order is shared by all ranks."""

    def __init__(self, batches, rank: int, world: int):
        if batches.batch_size % world:
            raise ConfigError(f"trainer.batch_size={batches.batch_size} (the global batch) must divide evenly "
                              f"over the {world} torchrun processes")
        self.batches, local = batches, batches.batch_size // world
        self.lo, self.hi = rank * local, (rank + 1) * local

    def __next__(self) -> torch.Tensor:
        return next(self.batches)[self.lo:self.hi]  # (B / world,)

    def state_dict(self) -> dict:  # the global sampler's: every rank holds the same
        return self.batches.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.batches.load_state_dict(state)


def shard(batches):
    import torch.distributed as dist

    return RankSlice(batches, rank(), world_size()) if dist.is_initialized() else batches


def wrap(step: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DDP around the training step (its forward runs the objective, so gradients really are averaged).

    Ranks > 0 then reseed their global RNG, so binarization and z noise differ across ranks."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    if not dist.is_initialized():
        return step
    if rank() > 0:
        torch.manual_seed(torch.initial_seed() + rank())
    return DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None)


def mean_over_ranks(t: torch.Tensor | None) -> torch.Tensor | None:
    """The average of `t` over ranks (a collective: every rank must call it); `t` itself when alone."""
    import torch.distributed as dist

    if t is None or not dist.is_initialized():
        return t
    t = t.clone()
    dist.all_reduce(t)  # sum; gloo has no AVG
    return t / world_size()


def average_meter(meter) -> None:
    """Replace a Meter's running sums by their mean over ranks, just before they are read and logged."""
    meter.sums, meter.kl_sum = mean_over_ranks(meter.sums), mean_over_ranks(meter.kl_sum)
    meter.good = mean_over_ranks(meter.good)  # finite steps per rank: sums / good is the mean over all ranks' steps
    import torch

    # objective-specific sums (iwae_bound, ess ...): the same keys on every rank
    meter.extra = {k: mean_over_ranks(torch.as_tensor(v, device=meter.device)) for k, v in meter.extra.items()}


class NullLogger:
    """The RunLogger (training/tblog.py) of ranks > 0: every call does nothing."""

    def scalars(self, prefix: str, metrics: dict, step: int) -> None:
        pass

    def kl_per_dim(self, kl: torch.Tensor, step: int) -> None:
        pass

    def image(self, tag: str, grid: torch.Tensor, step: int) -> None:
        pass

    def text(self, tag: str, text: str, step: int) -> None:
        pass

    def close(self) -> None:
        pass


def worker_overrides(line) -> list[str]:
    """Hydra overrides for torchrun ranks > 0 (`line`: command_line.CommandLine): a scratch run dir (rank 0 writes
    the outputs), unless the run dir is pinned (hydra.run.dir=..., or resume=..., whose checkpoint every rank
    must read)."""
    if not launched_by_torchrun() or os.environ["RANK"] == "0":
        return []
    if line.typed("hydra.run.dir") or line.typed("resume"):
        return []
    import tempfile

    scratch = os.path.join(tempfile.gettempdir(), f"vae-cli-rank{os.environ['RANK']}")
    return [f"hydra.run.dir={scratch}", "hydra.output_subdir=null"]
