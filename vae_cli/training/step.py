"""One training update as a function of no arguments, and its capture as one CUDA graph.

Everything that changes per step is read from device tensors: the batch's indices (a static buffer the
loop copies the next indices into) and the step counter (incremented in place; beta_t, the temperature and
the lr are computed from it on the device). So the same Python function runs eagerly (CPU, MPS, fallback)
or is captured once with torch.cuda.graph and replayed: gather, binarize/dequantize, objective, backward,
gradient norm and clipping, the meter's sums, the non-finite guard and the (capturable) optimizer update.
"""
import contextlib
import logging

import torch

from vae_cli.errors import ConfigError

log = logging.getLogger("vae_cli")


class StepFunction:
    """`fn()` trains one step on the batch `fn.idx` at step `fn.step` (both device tensors), then step += 1."""

    def __init__(self, module, params: list, opt, lr_schedule, meter, guard, split, prepare, grad_clip, autocast,
                 batch_size: int, device: torch.device):
        self.module, self.params, self.opt, self.lr_schedule = module, params, opt, lr_schedule
        self.meter, self.guard, self.images, self.labels = meter, guard, split.images, split.labels
        self.prepare, self.grad_clip, self.autocast = prepare, grad_clip, autocast
        self.idx = torch.zeros(batch_size, dtype=torch.long, device=device)  # (B,) the static index buffer
        self.step = torch.zeros((), dtype=torch.long, device=device)  # the number of updates done so far
        self.part = ""  # what ran last: names the part that failed a CUDA graph capture

    def __call__(self) -> None:
        self.part = "the batch gather and likelihood.prepare (binarize / dequantize)"
        images = torch.index_select(self.images, 0, self.idx)  # (B, C, H, W) uint8; ~10x faster than [idx] on CPU
        x, y = self.prepare(images), torch.index_select(self.labels, 0, self.idx)  # float, (B,)
        self.part = "the lr schedule"
        self.lr_schedule.apply(self.step)
        self.part = "the objective's forward pass (model and objective)"
        self.opt.zero_grad(set_to_none=True)
        with self.autocast():
            terms = self.module(x, self.step, y)
        self.part = "the backward pass"
        terms["loss"].mean().backward()
        self.part = "the gradient norm / clipping"
        grad_norm = self.clip()
        self.part = "the meter's running sums"
        ok = self.meter.add(terms, grad_norm, self.step)
        self.part = "the optimizer update (and the non-finite guard)"
        self.guard.step(self.opt, ok)
        self.step += 1

    def clip(self) -> torch.Tensor:
        """The total gradient norm (0-dim); with grad_clip, gradients are scaled to at most that norm."""
        if self.grad_clip is None:
            return torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        return torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)

    def state_tensors(self, model) -> list[torch.Tensor]:
        """Every tensor a step writes: parameters, buffers, optimizer state and lr, meter, guard, step."""
        opt = [v for s in self.opt.state.values() for v in s.values() if torch.is_tensor(v)]
        lrs = [g["lr"] for g in self.opt.param_groups if torch.is_tensor(g["lr"])]
        m = self.meter
        meter = [m.sums, m.good, m.first_bad, m.bad_terms, *([m.kl_sum] if m.kl_sum is not None else []),
                 *m.extra.values()]
        guard = [self.guard.skipped, self.guard.consecutive, self.guard.longest]
        return [*model.state_dict().values(), *opt, *lrs, *meter, *guard, self.step]


class GraphedStep:
    """The step captured once as a torch.cuda.CUDAGraph (after eager warm-up steps on a side stream, as the
    torch docs prescribe); calling it replays the graph. The warm-up and the capture leave no trace: every
    state tensor and the CUDA RNG are put back afterwards, so replay k is exactly eager step k."""

    def __init__(self, fn: StepFunction, model, device: torch.device, warmup: int = 2):
        saved = [t.detach().clone() for t in fn.state_tensors(model)]
        rng = torch.cuda.get_rng_state(device)
        try:
            self.graph = self._capture(fn, device, warmup)
        finally:  # captured or not, the run continues from the state before the warm-up
            with torch.no_grad():
                for t, s in zip(fn.state_tensors(model), saved):
                    t.copy_(s)
            torch.cuda.set_rng_state(rng, device)

    @staticmethod
    def _capture(fn: StepFunction, device: torch.device, warmup: int) -> torch.cuda.CUDAGraph:
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                fn()
        torch.cuda.current_stream(device).wait_stream(side)
        fn.opt.zero_grad(set_to_none=True)  # the captured backward allocates the gradients in the graph's pool
        graph = torch.cuda.CUDAGraph()
        fn.part = "the capture's start"
        with torch.cuda.graph(graph):
            fn()
            fn.part = "the capture's end"
        return graph

    def __call__(self) -> None:
        self.graph.replay()


def graph_obstacle(device: torch.device, compile: bool, distributed: bool) -> str | None:
    """Why this run cannot capture its step (before trying), or None."""
    if device.type != "cuda":
        return f"the device is {device.type}: CUDA graphs need a CUDA device"
    if compile:
        return "trainer.compile=true: torch.compile and the CUDA graph are alternatives (compile_mode=reduce-overhead " \
               "captures graphs itself)"
    if distributed:
        return "torchrun: DistributedDataParallel's gradient all-reduce is not captured here"
    return None


def refusal(why: str) -> ConfigError:
    """trainer.cuda_graph=true and a reason the step cannot be captured: the one-line error."""
    return ConfigError(f"trainer.cuda_graph=true, but {why}; use trainer.cuda_graph=auto or false")


def capture(fn: StepFunction, model, device: torch.device, mode, compile: bool = False, distributed: bool = False):
    """fn() already ran once eagerly (optimizer state, meter sums exist). -> the callable that runs one step:
    the replayed graph, or `fn` itself when mode is false, or (mode auto) when capture is impossible or fails,
    with one log line naming the part and why; mode true raises one ConfigError instead."""
    if mode is False:
        return fn
    why = graph_obstacle(device, compile, distributed)
    if why is None:
        fn.part = "the capture's set-up (side stream, CUDA RNG state)"
        try:
            with no_distribution_checks():
                graph = GraphedStep(fn, model, device)
            log.info("cuda_graph: the training step is captured as one CUDA graph and replayed")
            return graph
        except Exception as e:  # noqa: BLE001 -- any failure to capture means eager, said once
            e = first_error(e)
            why = f"{fn.part} could not be captured ({type(e).__name__}: {str(e).strip().splitlines()[0][:200]})"
    if mode is True:
        raise refusal(why)
    if device.type == "cuda":
        log.info(f"cuda_graph: eager steps: {why}")
    return fn


def first_error(e: BaseException) -> BaseException:
    """The exception that started a chain: an op that fails inside `torch.cuda.graph` is followed by the capture's
    own end failing ("operation failed due to a previous error during capture"), which would hide the cause."""
    while e.__context__ is not None and not e.__suppress_context__:
        e = e.__context__
    return e


@contextlib.contextmanager
def no_distribution_checks():
    """torch.distributions' argument validation reads values back to the host, which a capture forbids."""
    old = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        torch.distributions.Distribution.set_default_validate_args(old)
