"""Observers of one training step on any device: what a CUDA graph capture (torch.cuda.graph) forbids.

A capture records kernels; it cannot record the host. So a captured step must not read a device value back
(.item(), float(t), bool(t), `if t:`, .tolist(), .cpu()), must not produce a shape that depends on data
(nonzero, boolean masks, unique, bincount, repeat_interleave without output_size), must not copy host data
into the step (torch.tensor literals, list indices: pageable copies that sync, or constants baked in), and
must read and write the same tensors at every replay. `Hazards` records each such op with the line of our
code that issued it; `trace` records every op with its shapes and non-tensor arguments, so two steps can be
compared (a Python value that changes per step shows as a difference). Observers, not mocks: the real ops run.
"""
import traceback
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors
from torch.utils._python_dispatch import TorchDispatchMode

from vae_cli.training.trainer import Trainer

aten = torch.ops.aten
PACKAGE = str(Path(__file__).resolve().parents[1] / "vae_cli")
TORCH = str(Path(torch.__file__).parent)
MACHINERY = ("eval_frame.py", "_compile.py", "_python_dispatch.py", "overrides.py")  # the modes' own frames in torch
SYNC = "reads a device value back to the host (a sync a capture forbids)"
DYNAMIC = "has a data-dependent output shape (a host sync, then a shape the graph cannot replay)"
HOST_DATA = "makes a tensor from host data (a pageable host-to-device copy, or a constant baked into the graph)"
ALWAYS = {aten._local_scalar_dense: SYNC, aten.is_nonzero: SYNC, aten.equal: SYNC, aten.allclose: SYNC,
          aten.nonzero: DYNAMIC, aten.argwhere: DYNAMIC, aten.masked_select: DYNAMIC, aten.unique_dim: DYNAMIC,
          aten._unique: DYNAMIC, aten._unique2: DYNAMIC, aten.unique_consecutive: DYNAMIC, aten.bincount: DYNAMIC,
          aten.lift_fresh: HOST_DATA, aten.lift_fresh_copy: HOST_DATA, aten._pin_memory: "pins host memory"}
HOST_METHODS = {"tolist", "cpu", "numpy", "pin_memory"}


def _bool_index(indices) -> bool:
    return any(i is not None and i.dtype in (torch.bool, torch.uint8) for i in indices)


def _arg(args, kwargs, i: int, name: str, default=0):
    return args[i] if len(args) > i else kwargs.get(name, default)


def _conditional(func, args, kwargs) -> str | None:
    """Ops that are capturable with some arguments only."""
    packet = func.overloadpacket
    if packet in (aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_) and _bool_index(args[1]):
        return f"{DYNAMIC}: a boolean mask index (use torch.where)"
    if packet == aten.repeat_interleave and func._overloadname != "self_int" and kwargs.get("output_size") is None:
        return f"{DYNAMIC}: repeat_interleave by a tensor without output_size"
    if packet == aten.histc and _arg(args, kwargs, 2, "min") == _arg(args, kwargs, 3, "max"):
        return f"{SYNC}: histc without a fixed range (min = max: the range is read from the data)"
    if packet == aten.tensor_split and torch.is_tensor(args[1]):
        return f"{SYNC}: tensor_split at tensor positions"
    return None


def where() -> str:
    """The innermost line of our package on the stack (the line that issued the op), else the innermost line
    outside torch and this observer (a test's own code)."""
    stack = [f for f in traceback.extract_stack() if f.filename != __file__ and not f.filename.endswith(MACHINERY)]
    frames = [f for f in stack if not f.filename.startswith(TORCH)]
    ours = [f for f in frames if f.filename.startswith(PACKAGE)]
    f = (ours or frames)[-1]
    inside = f" [in torch: {Path(stack[-1].filename).name}:{stack[-1].lineno} ({stack[-1].name})]" \
        if stack[-1].filename.startswith(TORCH) else ""
    name = Path(f.filename).relative_to(Path(PACKAGE).parent) if ours else f.filename
    return f"{name}:{f.lineno} ({f.name}): {f.line}{inside}"


class Hazards(TorchDispatchMode):
    """Every aten op of the block that a capture forbids: `found` = [(op, why, line)], in order."""

    def __init__(self):
        super().__init__()
        self.found = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        why = ALWAYS.get(func.overloadpacket) or _conditional(func, args, kwargs)
        if why:
            self.found.append((str(func.overloadpacket), why, where()))
        return func(*args, **kwargs)


class HostCalls(TorchFunctionMode):
    """Python-level calls the dispatcher does not see on the CPU: .tolist() / .cpu() / .numpy() (device ->
    host copies), and factory functions without a device (they make CPU tensors: host data on CUDA)."""

    def __init__(self, found: list):
        super().__init__()
        self.found, self.factories = found, _device_constructors()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in HOST_METHODS and getattr(func, "__objclass__", None) in (torch.Tensor, torch._C.TensorBase):
            self.found.append((f"Tensor.{name}", "copies a device tensor to the host", where()))
        elif func in self.factories and kwargs.get("device") is None and name not in ("tensor", "as_tensor"):
            self.found.append((f"torch.{name}", "makes a tensor without device=: a CPU tensor on CUDA", where()))
        return func(*args, **kwargs)


class Trace(TorchDispatchMode):
    """Every op with its tensors' shapes and dtypes and its other arguments: what a capture would record."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat = [*args, *kwargs.items()]
        self.ops.append((str(func), tuple(_signature(a) for a in flat)))
        return func(*args, **kwargs)


def _signature(a):
    if torch.is_tensor(a):
        return tuple(a.shape), a.dtype
    if isinstance(a, (list, tuple)):
        return tuple(_signature(v) for v in a)
    if isinstance(a, (bool, int, float, complex, str, type(None), torch.dtype, torch.device, torch.layout,
                      torch.memory_format)):
        return repr(a)
    return type(a).__name__  # e.g. the profiler's record_function handles: new objects at every call


def hazards(fn) -> list[tuple[str, str, str]]:
    """Run fn() under both observers -> [(op, why, line of our code)]."""
    found = []
    with HostCalls(found), Hazards() as mode:
        fn()
    return found + mode.found


def trace(fn) -> list:
    with Trace() as mode:
        fn()
    return mode.ops


def tensors_held(root, limit: int = 8) -> dict[str, tuple[int, int]]:
    """Every tensor reachable from `root` through attributes, dicts and lists (depth <= limit) ->
    {path: (id, data_ptr)}: the Python-held state a replayed graph would keep reading and writing."""
    out, seen = {}, set()

    def walk(obj, path, depth):
        if torch.is_tensor(obj):
            out.setdefault(path, (id(obj), obj.data_ptr()))
            return
        if depth > limit or id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, type(None), type)):
            return
        seen.add(id(obj))
        if isinstance(obj, dict):
            items = obj.items()
        elif isinstance(obj, (list, tuple)):
            items = enumerate(obj)
        elif type(obj).__module__.split(".")[0] in ("vae_cli", "torch") and hasattr(obj, "__dict__"):
            items = vars(obj).items()
        else:
            return
        for k, v in items:
            walk(v, f"{path}.{k}" if isinstance(k, str) else f"{path}[{k if isinstance(k, int) else id(k)}]",
                 depth + 1)

    walk(root, "step_fn", 0)
    return out


class WatchedTrainer(Trainer):
    """The real Trainer; it also records the tensors its step holds right after the first step, when a CUDA run
    captures the step (`trainer._target_=hazards.WatchedTrainer.from_knobs`)."""

    def _first_step(self) -> None:
        super()._first_step()
        self.held_at_capture = tensors_held(self.step_fn)
