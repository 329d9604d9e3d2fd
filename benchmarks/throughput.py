"""Throughput of vae-cli's trainer against the pytorch/examples VAE recipe, side by side in one process.

    python benchmarks/throughput.py                 # CPU or CUDA, whichever `device=auto` picks
    python benchmarks/throughput.py --help

(a) `vae-cli`: the real `vae-train` path (apps.train.run_training with the composed config) for the same
784-400-20 Bernoulli MLP VAE, batch 128, Adam 1e-3. Its seconds per epoch are the trainer's own
train/examples_per_sec windows (one per epoch, read back from TensorBoard): they exclude the validation
passes and checkpoint writes that run_training also does. (b) `baseline`: benchmarks/baseline.py.
(a) and (b) alternate for --rounds rounds. Then the speed knobs, the conv model, IW-NLL evaluation with
k importance samples, and the peak RSS of a default `vae-train` run in a subprocess.
"""
import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from vae_cli.command_line import CommandLine
from vae_cli.training.threads import preset_environment

POLICY = preset_environment(CommandLine.parse(["vae-train"]))  # the CLI's thread policy (before torch loads), for both sides alike

import torch  # noqa: E402
from hydra import compose, initialize_config_module
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import baseline
from vae_cli.build import build_model, resolve_device
from vae_cli.apps.train import run_training
from vae_cli.data import _install_bundled_mnist, data_root, prepare_fixed, torchvision_images
from vae_cli.objectives.elbo import log_weights

MLP_784_400_20 = ["model.encoder.hidden_sizes=[400]", "model.decoder.hidden_sizes=[400]", "latent_dim=20",
                  "trainer.batch_size=128", "trainer.lr=1e-3"]
CONV = ["model=conv", "latent_dim=20", "trainer.batch_size=128"]
IWAE_1L = ["experiment=iwae_paper_1layer"]  # batch 128 (the trainer's default), k = 5
TRAIN_EXAMPLES = 55000  # vae-cli's MNIST train split (5000 of the 60000 are held out for validation)


class PeakMemory:
    """Peak resident set size (MB) while the block runs, polled from /proc; CUDA's max_memory_allocated too."""

    def __init__(self, device: torch.device):
        self.device, self.rss_mb, self.cuda_mb, self._stop = device, 0.0, float("nan"), threading.Event()

    def _poll(self) -> None:
        page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
        while True:  # at least one sample, however short the block
            with open("/proc/self/statm") as f:
                self.rss_mb = max(self.rss_mb, int(f.read().split()[1]) * page_mb)
            if self._stop.wait(0.02):
                return

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if self.device.type == "cuda":
            self.cuda_mb = torch.cuda.max_memory_allocated(self.device) / 2**20


def compose_cfg(overrides: list[str]):
    with initialize_config_module("vae_cli.configs", version_base="1.3"):
        return compose("train", overrides=overrides)


def vae_cli_run(device: torch.device, overrides: list[str], steps: int, windows: int):
    """run_training for steps * windows steps, logging once per window; -> (ex/s per window, memory, cfg, dir)."""
    run_dir = Path(tempfile.mkdtemp(prefix="vae-bench-"))
    cfg = compose_cfg([*overrides, f"device={device}", f"max_steps={steps * windows}",
                       f"trainer.log_every={steps}", f"trainer.eval_every={steps * windows}"])
    with PeakMemory(device) as mem:
        run_training(cfg, run_dir)
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [e.value for e in events.Scalars("train/examples_per_sec")], mem, cfg, run_dir


def row(name: str, ex_per_s: float, epoch_examples: int, mem: PeakMemory, note: str = "") -> dict:
    return {"case": name, "ex/s": ex_per_s, "s/epoch": epoch_examples / ex_per_s, "rss": mem.rss_mb,
            "cuda": mem.cuda_mb, "note": note}


def mlp_side_by_side(device, epochs: int, rounds: int, root: str) -> tuple[list[dict], object]:
    """(a) and (b) alternating; -> rows (mean ex/s over rounds and epochs; the speed-up is the median of the
    per-round ratios, which is steadier on a shared machine) and the last trained vae-cli run."""
    ours, base, ratios, last = [], [], [], None
    steps = TRAIN_EXAMPLES // 128
    for r in range(rounds):
        rates, mem_a, cfg, run_dir = vae_cli_run(device, MLP_784_400_20, steps, epochs)
        ours += rates
        with PeakMemory(device) as mem_b:
            base += [n / s for n, s in baseline.train_epochs(root, device, epochs)]
        ratios.append(statistics.mean(rates) / statistics.mean(base[-epochs:]))
        print(f"  round {r + 1}/{rounds}: vae-cli {statistics.mean(rates):8.0f} ex/s   "
              f"baseline {statistics.mean(base[-epochs:]):8.0f} ex/s", flush=True)
        last = (cfg, run_dir)
    rows = [row("MLP 784-400-20, vae-cli", statistics.mean(ours), steps * 128, mem_a,
                f"{len(ours)} epochs of {steps * 128}"),
            row("MLP 784-400-20, pytorch/examples", statistics.mean(base), 60000, mem_b,
                f"{len(base)} epochs of 60000")]
    rows[0]["ratio"], rows[0]["vs"] = statistics.median(ratios), "baseline"
    rows[0]["note"] += "; ratio per round: " + ", ".join(f"{q:.2f}" for q in ratios)
    return rows, last


def knob_cases(cuda: bool) -> list[tuple[str, list[str]]]:
    mlp = [("defaults", []), ("compile=true", ["trainer.compile=true"]),
           ("optimizer.fused=false", ["optimizer.fused=false"])]
    mlp += [("cuda_graph=false (eager)", ["trainer.cuda_graph=false"]), ("tf32=false", ["trainer.tf32=false"]),
            ("precision=bf16", ["trainer.precision=bf16"]),
            ("compile, reduce-overhead", ["trainer.compile=true", "trainer.compile_mode=reduce-overhead"])] if cuda else []
    conv = [("defaults", []), ("channels_last=true", ["trainer.channels_last=true"])]
    conv += [("cuda_graph=false (eager)", ["trainer.cuda_graph=false"]),
             ("precision=bf16", ["trainer.precision=bf16"])] if cuda else []
    iwae = [("defaults", []), ("cuda_graph=false (eager)", ["trainer.cuda_graph=false"])] if cuda else []
    return [(f"MLP knob: {n}", [*MLP_784_400_20, *o]) for n, o in mlp] + \
        [(f"conv knob: {n}", [*CONV, *o]) for n, o in conv] + [(f"iwae_paper_1layer: {n}", [*IWAE_1L, *o]) for n, o in iwae]


def knob_rows(device, steps: int, conv_steps: int, rounds: int) -> list[dict]:
    """Each speed knob against the defaults, cases interleaved for `rounds` rounds; the median over rounds
    of the steady window (the 2nd of 2 windows of `steps` or `conv_steps` steps) is reported."""
    cases = knob_cases(device.type == "cuda")
    rates, mems = {name: [] for name, _ in cases}, {}
    for r in range(rounds):
        for name, overrides in cases:
            n = conv_steps if name.startswith(("conv", "iwae")) else steps
            windows, mems[name], _, _ = vae_cli_run(device, overrides, n, 2)
            rates[name].append(windows)
            print(f"  round {r + 1}/{rounds} {name}: {windows[-1]:.0f} ex/s (1st window {windows[0]:.0f})", flush=True)
    rows = []
    for name, _ in cases:
        ref = rates[name.split(":")[0] + ": defaults"]
        rows.append(row(name, statistics.median(w[-1] for w in rates[name]), TRAIN_EXAMPLES, mems[name],
                        f"ex/s per round: " + ", ".join(f"{w[-1]:.0f}" for w in rates[name]) +
                        f"; 1st window (warm-up) {rates[name][0][0]:.0f}"))
        rows[-1]["ratio"] = statistics.median(w[-1] / d[-1] for w, d in zip(rates[name], ref))
        rows[-1]["vs"] = "defaults"
    return rows


@torch.no_grad()
def iw_nll(model, x: torch.Tensor, k: int, budget: int) -> torch.Tensor:
    """-log p(x) ~= -log (1/k) sum_s w_s, per example (nats), batched over examples x samples:
    chunks of at most `budget` likelihood elements ((examples * samples) * pixels)."""
    pixels = x[0].numel()
    per_batch = max(1, budget // (k * pixels))  # examples per batch when all k samples fit at once
    chunk = min(k, max(1, budget // (per_batch * pixels)))  # samples per chunk
    out = []
    for xb in x.split(per_batch):
        acc = torch.full((len(xb),), -math.inf, device=x.device)
        for s in range(0, k, chunk):
            lw = log_weights(model.latent_terms(xb, None, min(chunk, k - s)))  # (S, b)
            acc = torch.logaddexp(acc, lw.logsumexp(0))
        out.append(math.log(k) - acc)
    return torch.cat(out)


def iw_row(device, cfg, run_dir: Path, k: int, n: int, root: str) -> dict:
    """IW-NLL over the first n test images with the trained MLP; extrapolated to the 10k test set if n < 10k."""
    data = torchvision_images("MNIST", root, download=False)
    model = build_model(cfg, data.image_shape).to(device).eval()
    model.load_state_dict(torch.load(run_dir / "checkpoints" / "last.pt", map_location=device)["model"])
    x = prepare_fixed(model.likelihood.prepare, data.test.images[:n].to(device), 0)
    budget = 2**27 if device.type == "cuda" else 2**22
    with PeakMemory(device) as mem:
        tick = time.perf_counter()
        nll = iw_nll(model, x, k, budget).mean().item()
        secs = time.perf_counter() - tick
    total = secs * len(data.test) / n
    note = f"mean IW-NLL {nll:.2f} nats over {n}; " + ("measured" if n == len(data.test) else
                                                      f"10k time EXTRAPOLATED from {n} examples")
    r = row(f"IW-NLL k={k}, 10k test images", n / secs, len(data.test), mem, note)
    r["s/epoch"] = total
    return r


def default_run_rss(epochs: int) -> dict:
    """Peak RSS (MB) of `python -m vae_cli max_epochs=E` (the default config otherwise) in a child process."""
    run_dir = tempfile.mkdtemp(prefix="vae-bench-rss-")
    cmd = [sys.executable, "-m", "vae_cli", f"max_epochs={epochs}", f"hydra.run.dir={run_dir}"]
    tick = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read().decode()}")
    return {"cmd": " ".join(cmd[1:]), "rss_mb": usage.ru_maxrss / 1024, "seconds": time.perf_counter() - tick}


def print_table(rows: list[dict], device, rss: dict | None) -> None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n## vae-cli throughput on {device} ({name}), torch {torch.__version__}\n")
    print(f"thread policy: {POLICY.why}\n")
    print("| case | examples/s | s/epoch | peak RSS MB | CUDA peak MB | speed-up (median of rounds) | note |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        ratio = f"{r['ratio']:.2f}x {r['vs']}" if "ratio" in r else ""
        cuda = "-" if math.isnan(r["cuda"]) else f"{r['cuda']:.0f}"
        print(f"| {r['case']} | {r['ex/s']:.0f} | {r['s/epoch']:.2f} | {r['rss']:.0f} | {cuda} | "
              f"{ratio} | {r['note']} |")
    if rss:
        print(f"\npeak RSS of `{rss['cmd']}`: {rss['rss_mb']:.0f} MB (target <= 1536 MB), {rss['seconds']:.0f} s")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--epochs", type=int, default=1, help="epochs per side per round")
    p.add_argument("--rounds", type=int, default=3, help="alternations of vae-cli and the baseline")
    p.add_argument("--knob-steps", type=int, default=200, help="steps per window for the knob rows (0: skip)")
    p.add_argument("--conv-steps", type=int, default=50, help="steps per window for the conv knob rows")
    p.add_argument("--knob-rounds", type=int, default=3, help="interleaved repeats of the knob rows")
    p.add_argument("--iw-k", type=int, default=5000, help="importance samples per test image")
    p.add_argument("--iw-examples", type=int, default=None, help="test images (default: 10000 on CUDA, 20 on CPU)")
    p.add_argument("--rss-epochs", type=int, default=1, help="epochs of the default vae-train run (0: skip)")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    device = resolve_device(args.device)
    root = str(data_root(None))
    _install_bundled_mnist(Path(root))
    rss = default_run_rss(args.rss_epochs) if args.rss_epochs else None  # first: RUSAGE is per child
    print(f"MLP side by side on {device}: {args.rounds} rounds x {args.epochs} epoch(s) each", flush=True)
    rows, (cfg, run_dir) = mlp_side_by_side(device, args.epochs, args.rounds, root)
    rows += knob_rows(device, args.knob_steps, args.conv_steps, args.knob_rounds) if args.knob_steps else []
    n = args.iw_examples or (10000 if device.type == "cuda" else 20)
    rows.append(iw_row(device, cfg, run_dir, args.iw_k, n, root))
    print_table(rows, device, rss)


if __name__ == "__main__":
    main()
