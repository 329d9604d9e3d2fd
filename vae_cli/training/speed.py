"""Speed knobs for one device: TF32 matmuls, fused Adam, channels_last convs, torch.compile.

The training step is `TrainStep`, a module whose forward runs the objective: that is the call that
torch.compile traces and that DistributedDataParallel hooks for gradient averaging (objectives call
`model.latent_terms`, not `model.forward`, so wrapping the bare model would sync nothing).
"""
import torch
import torch.nn as nn

from vae_cli.errors import ConfigError


class TrainStep(nn.Module):
    """objective(model, x, step, y) -> dict of per-example terms, as a module's forward."""

    def __init__(self, model: nn.Module, objective):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, x: torch.Tensor, step: int, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return self.objective(self.model, x, step, y)


def set_tf32(enabled: bool, device: torch.device) -> None:
    """TF32 tensor-core matmuls and convolutions (Ampere and newer); no effect off CUDA."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def adam(params, lr: float, weight_decay: float, fused: bool, device: torch.device, **kwargs) -> torch.optim.Adam:
    """Adam; fused=True runs the whole update as one kernel on CUDA and CPU (elsewhere: torch's foreach Adam)."""
    fused = fused and device.type in ("cuda", "cpu")
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None, **kwargs)


def to_channels_last(model: nn.Module, enabled: bool) -> nn.Module:
    """4-D conv weights in NHWC order (faster cuDNN/oneDNN kernels for some convs); dense layers unchanged."""
    return model.to(memory_format=torch.channels_last) if enabled else model


def compiled(step: nn.Module, enabled: bool, mode: str | None) -> nn.Module:
    """torch.compile the training step (mode: None = default, reduce-overhead = CUDA graphs, max-autotune)."""
    if not enabled:
        if mode is not None:
            raise ConfigError(f"trainer.compile_mode={mode!r} needs trainer.compile=true")
        return step
    return torch.compile(step, mode=mode)
