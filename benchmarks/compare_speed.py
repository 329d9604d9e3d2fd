"""vae-compare on a 50-run sweep: how long the table takes (the target is under 10 s on a 2-core CPU).

    python benchmarks/compare_speed.py DIR    # makes DIR (a 10 beta x 5 seed sweep) unless it is there, then times

Each job logs about as much as the default MNIST run (8580 steps, log_every=100, one validation per epoch
for 20 epochs): 80 train logs and 20 validations with 32 KL-per-dim scalars and two 64-image grids (400 steps,
log_every=5, eval_every=20, 28x28 fake data, a small MLP), so its event file holds a default run's number of
records. The table is timed as the real command in a fresh process (`python -m vae_cli.compare DIR`), three
times; the median is reported.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

JOB = ["trainer=debug", "dataset=fake", "model.encoder.hidden_sizes=[32]", "model.decoder.hidden_sizes=[32]",
       "trainer.batch_size=16", "trainer.num_images=64", "max_steps=400", "trainer.log_every=5",
       "trainer.eval_every=20", "device=cpu", "beta=0.25,0.5,1,2,3,4,6,8,12,16", "seed=0,1,2,3,4"]


def make_sweep(folder: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vae_cli", "-m", *JOB, f"hydra.sweep.dir={folder}"],
                          capture_output=True, text=True, env=env)
    print(f"sweep: exit {done.returncode} after {time.perf_counter() - start:.0f} s; "
          f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}")


def time_table(folder: Path) -> list[float]:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "vae_cli.compare", str(folder)], capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        assert done.returncode == 0, done.stderr
    print(done.stdout)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    folder = parser.parse_args().dir
    if not folder.is_dir():
        make_sweep(folder)
    runs = len(list(folder.glob("*/.hydra/config.yaml")))
    events = sum(p.stat().st_size for p in folder.rglob("events.out.tfevents.*"))
    times = time_table(folder)
    print(f"{runs} runs, {events / 2**20:.1f} MiB of events: vae-compare took "
          f"{', '.join(f'{t:.2f}' for t in times)} s (median {statistics.median(times):.2f} s); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
