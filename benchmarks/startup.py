"""Where the seconds of a `vae-train` start go, and what a short run spends outside its training steps.

    python benchmarks/startup.py                    # 3 rounds; max_steps=1 runs on the bundled MNIST
    python benchmarks/startup.py --epochs 5         # also: a 5-epoch default run, time outside the steps
    python benchmarks/startup.py --importtime       # also: python -X importtime, cumulative per package

Whole processes, alternating in each round: `python -c "import torch"`, `vae-train --help`, `vae-eval --help`,
a refused start (a typo), a refused start (a bad value), and a one-step `vae-train` traced: this script runs the
real entry point (vae_cli.cli.train_main) in a child interpreter that wraps the start-up phases with timers
and reports, from the moment the parent started the child, when each began and how long it took.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

TRACE = r"""
import json, sys, time
t0 = float(sys.argv[1]); out = sys.argv[2]; sys.argv = ["vae-train", *sys.argv[3:]]
marks, steps = [("python started", time.time() - t0, 0.0)], {"n": 0, "s": 0.0, "first": None}
def timed(owner, name, label):  # a phase this version lacks is left out
    fn = getattr(owner, name, None)
    if fn is None:
        return
    def wrapper(*a, **k):
        tick = time.time()
        try:
            return fn(*a, **k)
        finally:
            marks.append((label, tick - t0, time.time() - tick))
    setattr(owner, name, wrapper)
tick = time.time(); import torch; marks.append(("import torch", tick - t0, time.time() - tick))
tick = time.time(); import hydra, omegaconf; marks.append(("import hydra", tick - t0, time.time() - tick))
from vae_cli import cli, build
from vae_cli.training import trainer, tblog
timed(cli, "_check_argv", "argument checks (before Hydra composes)")
timed(build, "build_data", "load the data")
timed(build, "build_model", "build the model")
timed(trainer.Trainer, "build", "model, data, optimizer on the device")
timed(tblog.RunLogger, "__init__", "open TensorBoard (config, hparams)")
timed(trainer.Trainer, "_validate", "validation + images + checkpoint")
timed(trainer.Trainer, "_save", "  of which: checkpoint files")
timed(trainer.Trainer, "_log_images", "  of which: image grids")
try:
    from vae_cli.training import vae_task
    timed(vae_task.VAETask, "_log_images", "  of which: image grids")
except ImportError:
    pass
step = trainer.Trainer._train_step
def counted(self):
    tick = time.time()
    step(self)
    steps["s"] += time.time() - tick
    steps["n"] += 1
    steps["first"] = steps["first"] or tick - t0
trainer.Trainer._train_step = counted
def dump():
    json.dump({"marks": marks, "steps": steps, "end": time.time() - t0}, open(out, "w"))
exit_now = getattr(cli, "exit_now", None)  # absent in older versions, which end through the interpreter
def dump_then_exit(code):
    dump()
    exit_now(code)
if exit_now is not None:
    cli.exit_now = dump_then_exit
try:
    cli.train_main()
finally:
    dump()
"""


def wall(cmd: list[str], ok=(0,)) -> float:
    tick = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-1500:]}")
    return time.time() - tick


def traced(args: list[str]) -> dict:
    out = tempfile.mktemp(suffix=".json")
    run_dir = tempfile.mkdtemp(prefix="vae-startup-")
    t0 = time.time()
    done = subprocess.run([sys.executable, "-c", TRACE, str(t0), out, *args, f"hydra.run.dir={run_dir}",
                           "trainer.progress=false"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"traced vae-train {' '.join(args)} failed:\n{done.stderr[-1500:]}")
    result = json.load(open(out))
    result["wall"] = time.time() - t0
    return result


def print_trace(r: dict, title: str) -> None:
    print(f"\n{title}: whole process {r['wall']:.2f} s; first training step began at {r['steps']['first']:.2f} s; "
          f"{r['steps']['n']} steps took {r['steps']['s']:.2f} s; outside the steps "
          f"{r['wall'] - r['steps']['s']:.2f} s\n")
    print("| phase | began at s | took s |\n|---|---:|---:|")
    for label, began, took in r["marks"]:
        print(f"| {label} | {began:.2f} | {took:.2f} |")


def importtime(args: list[str]) -> None:
    run_dir = tempfile.mkdtemp(prefix="vae-startup-")
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "from vae_cli.cli import train_main; train_main()",
                           *args, f"hydra.run.dir={run_dir}"], capture_output=True, text=True)
    totals = {}
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cum, name = line.split("|")
            top = name.strip().split(".")[0]
            if len(name) - len(name.lstrip()) <= 3:  # imported by vae-cli (or Python), not by another package
                totals[top] = totals.get(top, 0) + int(cum) / 1e6
    print("\n| package (python -X importtime, cumulative, first imported by vae-cli) | s |\n|---|---:|")
    for name, s in sorted(totals.items(), key=lambda kv: -kv[1])[:8]:
        print(f"| {name} | {s:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=0, help="also trace a default run of this many epochs")
    p.add_argument("--importtime", action="store_true")
    a = p.parse_args()
    py, entry = sys.executable, "from vae_cli.cli import {}; {}()"
    cases = {"python -c 'import torch'": [py, "-c", "import torch"],
             "vae-train --help": [py, "-c", entry.format("train_main", "train_main"), "--help"],
             "vae-eval --help": [py, "-c", entry.format("eval_main", "eval_main"), "--help"],
             "refused: a typo (latnt_dim=3)": [py, "-c", entry.format("train_main", "train_main"), "latnt_dim=3"],
             "refused: a bad value (latent_dim=0)": [py, "-c", entry.format("train_main", "train_main"),
                                                     "latent_dim=0", f"hydra.run.dir={tempfile.mkdtemp()}"]}
    times, firsts, traces = {k: [] for k in cases}, [], []
    for _ in range(a.rounds):
        for name, cmd in cases.items():
            times[name].append(wall(cmd, ok=(0, 2)))
        traces.append(traced(["max_steps=1"]))
        firsts.append(traces[-1]["steps"]["first"])
    torch_s = statistics.median(times["python -c 'import torch'"])
    print(f"## start-up, median of {a.rounds} alternating rounds (whole processes)\n")
    print("| command | s |\n|---|---:|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.2f} |")
    print(f"| vae-train max_steps=1: first training step began at | {statistics.median(firsts):.2f} |")
    print(f"| ... minus `import torch` (target <= 1.0) | {statistics.median(firsts) - torch_s:.2f} |")
    print(f"| vae-train max_steps=1, whole process | {statistics.median(t['wall'] for t in traces):.2f} |")
    print_trace(sorted(traces, key=lambda t: t["steps"]["first"])[len(traces) // 2], "the median max_steps=1 run")
    if a.epochs:
        print_trace(traced([f"max_epochs={a.epochs}"]), f"a default {a.epochs}-epoch run")
    if a.importtime:
        importtime(["max_steps=1"])


if __name__ == "__main__":
    main()
