"""bf16 autocast against fp32 on this machine: final validation ELBO at equal steps, and training throughput.

    python benchmarks/bf16_parity.py                       # MLP, conv, IWAE preset; seeds 0 1 2
    python benchmarks/bf16_parity.py --cases mlp --seeds 0 --scale 0.2

Every run is the real CLI in a subprocess (`python -m vae_cli ... device=cpu`), fp32 and bf16 alternating per
seed, so a change in the machine's load hits both alike. The ELBO is the final validation ELBO (nats, on the
5000 held-out images, computed in fp32 whatever the training precision); throughput is the last logged
train/examples_per_sec window (training steps only). Parity holds when |mean over seeds of bf16 - fp32|
<= 0.5 nats.
"""
import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

CASES = {  # name -> (overrides, steps at --scale 1)
    "mlp": ([], 1000),
    "conv": (["model=conv"], 300),
    "iwae": (["experiment=iwae_paper_1layer"], 2000),
}
TOLERANCE = 0.5  # nats


def train(overrides: list[str], precision: str, steps: int, seed: int) -> tuple[float, float]:
    """One `vae-train` run -> (final val elbo, ex/s of its last training window)."""
    run_dir = Path(tempfile.mkdtemp(prefix="vae-bf16-"))
    args = [*overrides, "device=cpu", f"seed={seed}", f"max_steps={steps}", f"trainer.precision={precision}",
            f"trainer.log_every={max(steps // 2, 1)}", f"trainer.eval_every={steps}", "trainer.progress=false",
            f"hydra.run.dir={run_dir}"]
    done = subprocess.run([sys.executable, "-m", "vae_cli", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"vae-train {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    rates = re.findall(r"(\d+) ex/s", (run_dir / "train.log").read_text())
    return float(ckpt["val"]["elbo"]), float(rates[-1]) if rates else float("nan")


def run_case(name: str, seeds: list[int], scale: float) -> dict:
    overrides, steps = CASES[name]
    steps = max(int(steps * scale), 2)
    out = {"fp32": [], "bf16": [], "rate_fp32": [], "rate_bf16": [], "steps": steps}
    for seed in seeds:
        for precision in ("fp32", "bf16"):
            elbo, rate = train(overrides, precision, steps, seed)
            out[precision].append(elbo)
            out[f"rate_{precision}"].append(rate)
            print(f"  {name} seed {seed} {precision}: val elbo {elbo:.2f} nats, {rate:.0f} ex/s", flush=True)
    return out


def print_table(results: dict) -> None:
    print(f"\n## bf16 vs fp32 on the CPU, torch {torch.__version__}\n")
    print("| case | steps | val ELBO fp32 (mean) | val ELBO bf16 (mean) | bf16 - fp32 per seed | parity (<= 0.5) "
          "| ex/s fp32 | ex/s bf16 | speed-up (median of seeds) |")
    print("|---|---:|---:|---:|---|---|---:|---:|---:|")
    for name, r in results.items():
        diffs = [b - a for a, b in zip(r["fp32"], r["bf16"])]
        mean_diff = statistics.mean(diffs)
        ratio = statistics.median(b / a for a, b in zip(r["rate_fp32"], r["rate_bf16"]))
        print(f"| {name} | {r['steps']} | {statistics.mean(r['fp32']):.2f} | {statistics.mean(r['bf16']):.2f} | "
              f"{', '.join(f'{d:+.2f}' for d in diffs)} | {'PASS' if abs(mean_diff) <= TOLERANCE else 'FAIL'} "
              f"({mean_diff:+.2f}) | {statistics.median(r['rate_fp32']):.0f} | {statistics.median(r['rate_bf16']):.0f} "
              f"| {ratio:.2f}x |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every case's step count")
    args = p.parse_args()
    print_table({name: run_case(name, args.seeds, args.scale) for name in args.cases})


if __name__ == "__main__":
    main()
