"""What the one training loop (training/trainer.py) trains: a task supplies its module, its batches, the step's
terms and its validation; the Trainer does the rest (optimizer, non-finite guard, signals, progress, TensorBoard,
checkpoints, resume). vae-train's task is `VAETask`; vae-prior's is apps/prior.py's `CodePriorTask`."""
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
import torch.nn as nn

from vae_cli.data import IndexBatches, Split
from vae_cli.models.base import Metric
from vae_cli.training.knobs import Evaluation


class RandomBatches:
    """Index batches drawn uniformly with replacement (a batch may be larger than the data); the generator is
    on the CPU, so a checkpoint resumes on another device with the same draws."""

    def __init__(self, num_examples: int, batch_size: int, device: torch.device, seed: int):
        self.n, self.batch_size, self.device = num_examples, batch_size, torch.device(device)
        self.generator = torch.Generator().manual_seed(seed)

    def __next__(self) -> torch.Tensor:
        return torch.randint(self.n, (self.batch_size,), generator=self.generator).to(self.device)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].cpu())


class Task(ABC):
    """`module` is trained and checkpointed; `train` holds the training examples (images or codes, labels) on the
    device once `to` ran; `prepare` turns a gathered batch into the step's input (binarize / dequantize)."""

    name: ClassVar[str]  # written into every checkpoint: what it holds ("vae", "code_prior")
    validate_at_start: ClassVar[bool] = True  # validate the untrained module at step 0
    module: nn.Module
    train: Split
    best_metric: Metric  # the validation metric best.pt is kept by
    objective = None  # what precision=auto asks whether bf16 keeps fp32's quality (Objective.bf16); None: yes

    @abstractmethod
    def to(self, device: torch.device, seed: int, evaluation: Evaluation) -> None:
        """Module and data on `device`, and the fixed inputs of every validation (seeded)."""

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        return batch

    def batches(self, batch_size: int, device: torch.device, seed: int):
        """The training batches' indices (an iterator with state_dict / load_state_dict): shuffled epochs."""
        return IndexBatches(len(self.train), batch_size, device, seed)

    @abstractmethod
    def step_module(self) -> nn.Module:
        """A module whose forward(x, step, y) returns the step's named terms, per example, `loss` among them."""

    def knobs(self, step) -> dict:
        """Step-dependent settings logged beside the train metrics (beta, temperature ...)."""
        return {}

    @abstractmethod
    def validate(self, step: int, logger) -> dict:
        """Validation metrics (host floats) at `step`, its scalars and pictures written to `logger` (tblog)."""
