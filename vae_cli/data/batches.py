"""Batches on the device: shuffled index batches, and a fixed-seed `prepare` for comparable metrics."""
import torch

from vae_cli.errors import ConfigError, UserError


def prepare_fixed(prepare, images: torch.Tensor, seed: int) -> torch.Tensor:
    """`prepare` (binarize/dequantize) under a fixed seed: the same noise every time, for comparable metrics."""
    devices = [images.device] if images.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return prepare(images)


class IndexBatches:
    """Shuffled index batches on `device`; an epoch is len // batch_size full batches (the rest is dropped).

    The permutation is drawn on the CPU and copied to `device` (once an epoch), so the generator's state is
    the same kind on every device: a checkpoint resumes on another device (CPU <-> CUDA) with the same order."""

    def __init__(self, num_examples: int, batch_size: int, device: torch.device, seed: int):
        if not 0 < batch_size <= num_examples:
            raise ConfigError(f"trainer.batch_size={batch_size} must be in [1, {num_examples}] "
                              f"(the number of training examples)")
        self.n, self.batch_size, self.device = num_examples, batch_size, torch.device(device)
        self.generator = torch.Generator().manual_seed(seed)  # CPU, whatever the device
        self.perm, self.pos = None, 0

    def __next__(self) -> torch.Tensor:
        if self.perm is None or self.pos + self.batch_size > self.n:
            self.perm = torch.randperm(self.n, generator=self.generator).to(self.device)
            self.pos = 0
        self.pos += self.batch_size
        return self.perm[self.pos - self.batch_size:self.pos]

    def state_dict(self) -> dict:
        return {"perm": None if self.perm is None else self.perm.cpu(), "pos": self.pos,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        generator = state["generator"].cpu()
        if generator.numel() != self.generator.get_state().numel():
            raise UserError("the checkpoint's batch order comes from a CUDA generator (an older vae-cli): resume it "
                            "with the vae-cli version and device that wrote it, or start a new run")
        self.perm = None if state["perm"] is None else state["perm"].to(self.device)
        self.pos = state["pos"]
        self.generator.set_state(generator)
