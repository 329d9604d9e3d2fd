"""Whole processes: `vae-train` against the pytorch/examples VAE recipe (benchmarks/baseline.py), same epochs.

    python benchmarks/versus_baseline.py                  # 2 epochs, 3 alternating rounds, quiet
    python benchmarks/versus_baseline.py --busy 1         # the same beside one busy-looping process

Both sides: the 784-400-20 Bernoulli MLP, batch 128, Adam 1e-3, on the CPU, from typing the command to its exit
(interpreter, imports, data, training; vae-train also validates, writes images, checkpoints and TensorBoard
each epoch, the recipe does nothing but train). The ratio is baseline seconds / vae-train seconds per round.
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MLP_784_400_20 = ["model.encoder.hidden_sizes=[400]", "model.decoder.hidden_sizes=[400]", "latent_dim=20",
                  "trainer.batch_size=128", "trainer.lr=1e-3", "device=cpu", "trainer.progress=false"]


def timed(cmd: list[str]) -> float:
    tick = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-1500:]}")
    return time.perf_counter() - tick


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--busy", type=int, default=0, help="busy-looping processes beside both sides")
    p.add_argument("overrides", nargs="*", help="extra vae-train overrides, e.g. trainer.precision=bf16")
    a = p.parse_args()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(a.busy)]
    ours, theirs = [], []
    try:
        for r in range(a.rounds):
            run_dir = tempfile.mkdtemp(prefix="vae-vs-")
            ours.append(timed([sys.executable, "-m", "vae_cli", *MLP_784_400_20, f"max_epochs={a.epochs}",
                               *a.overrides, f"hydra.run.dir={run_dir}"]))
            theirs.append(timed([sys.executable, str(HERE / "baseline.py"), "--epochs", str(a.epochs)]))
            print(f"round {r + 1}: vae-train {ours[-1]:.1f} s, recipe {theirs[-1]:.1f} s, "
                  f"{theirs[-1] / ours[-1]:.2f}x", flush=True)
    finally:
        for b in busy:
            b.kill()
    ratios = [t / o for o, t in zip(ours, theirs)]
    print(f"\n{a.epochs} epochs, {a.busy} busy process(es): vae-train {statistics.median(ours):.1f} s, recipe "
          f"{statistics.median(theirs):.1f} s (medians); ratio per round {', '.join(f'{q:.2f}' for q in ratios)}; "
          f"median {statistics.median(ratios):.2f}x (target >= 5x)")


if __name__ == "__main__":
    main()
