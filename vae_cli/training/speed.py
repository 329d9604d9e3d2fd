"""Speed knobs for one device: precision, TF32 matmuls, the optimizer's device options, channels_last convs,
torch.compile.

The training step is `TrainStep`, a module whose forward runs the objective: that is the call that
torch.compile traces and that DistributedDataParallel hooks for gradient averaging (objectives call
`model.latent_terms`, not `model.forward`, so wrapping the bare model would sync nothing).
"""
import inspect

import torch
import torch.nn as nn

from vae_cli.errors import ConfigError


class TrainStep(nn.Module):
    """objective(model, x, step, y) -> dict of per-example terms, as a module's forward."""

    def __init__(self, model: nn.Module, objective):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, x: torch.Tensor, step: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return self.objective(self.model, x, step, y)


PRECISIONS = ("fp32", "bf16", "auto")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo: native bf16 dot products (AVX-512 BF16, AMX)


def native_bf16_cpu(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU multiplies bf16 natively (else oneDNN emulates it, slower than fp32)."""
    try:
        flags = next((ln for ln in open(cpuinfo) if ln.startswith("flags")), "").split()
    except OSError:  # not Linux: no way to tell here, so no
        return False
    return any(f in flags for f in BF16_CPU_FLAGS)


def resolve_precision(precision: str, device: torch.device, objective=None) -> tuple[str, str]:
    """trainer.precision -> (fp32 | bf16, what the start line adds). auto: bf16 for an objective that declares
    bf16 parity (Objective.bf16) on a CPU with native bf16
    (measured there: the same val ELBO within 0.5 nats, faster; docs/performance.md), fp32 elsewhere (CUDA:
    not measured yet; bf16 is one knob away)."""
    parity = getattr(objective, "bf16", True)
    if precision == "fp32" and parity and device.type == "cpu" and native_bf16_cpu():
        return "fp32", "this CPU has native bf16: trainer.precision=auto trains faster, docs/performance.md"
    if precision != "auto":
        return precision, ""
    if not parity:
        return "fp32", f"auto: objective {type(objective).__name__} keeps fp32"
    if device.type == "cpu" and native_bf16_cpu():
        return "bf16", "auto: this CPU has native bf16"
    return "fp32", f"auto: {'no native bf16 on this CPU' if device.type == 'cpu' else 'fp32 on ' + device.type}"


def set_tf32(enabled: bool, device: torch.device) -> None:
    """TF32 tensor-core matmuls and convolutions (Ampere and newer); no effect off CUDA."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def fill_optimizer(optimizer, params: list, device: torch.device, capturable: bool = False,
                   tensor_lr: bool = False) -> torch.optim.Optimizer:
    """The optimizer config's partial (configs/optimizer) with its parameters and device-dependent options:
    fused only on CUDA and CPU; on CUDA capturable (state steps on the device) and, for a captured step,
    the lr as a device tensor the lr schedule updates in place."""
    kwargs = dict(optimizer.keywords)
    accepted = inspect.signature(optimizer.func).parameters
    if kwargs.get("fused") and device.type not in ("cuda", "cpu"):
        kwargs["fused"] = None
    if capturable and "capturable" in accepted:
        kwargs["capturable"] = True
        if tensor_lr:
            kwargs["lr"] = torch.tensor(float(kwargs.get("lr", 1e-3)), device=device)
    return optimizer.func(params, *optimizer.args, **kwargs)


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
