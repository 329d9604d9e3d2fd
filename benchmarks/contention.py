"""CPU under contention: the default `vae-train` run beside busy processes, and a 2-job joblib sweep.

    python benchmarks/contention.py busy    # default run: quiet vs beside 2 busy processes (target >= 0.3x)
    python benchmarks/contention.py sweep   # launcher=joblib n_jobs=2 vs the two jobs one after the other (<= 1.1x)

Every run is the real CLI in a subprocess (`python -m vae_cli`), so the thread policy of training/threads.py
is chosen as for a user: before torch loads. `busy` also runs with OMP_WAIT_POLICY=ACTIVE set by hand (the
user's environment wins), which is what the policy replaces. Throughput is the last train/examples_per_sec
window (training only); the sweep compares wall-clock times of whole commands.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

POLICY_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "VAE_CLI_THREAD_POLICY")


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in POLICY_VARS}
    return {**env, **extra}


def train(args: list[str], env: dict) -> tuple[float, float, Path]:
    """One `vae-train` command -> (examples/s of its last window, wall seconds, run dir)."""
    run_dir = Path(tempfile.mkdtemp(prefix="vae-contention-"))
    tick = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vae_cli", *args, f"hydra.run.dir={run_dir}",
                           f"hydra.sweep.dir={run_dir}"], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - tick
    if done.returncode != 0:
        raise SystemExit(f"vae-train {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    rates = []
    for tb in sorted({e.parent for e in run_dir.rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(tb))
        acc.Reload()
        rates.append(acc.Scalars("train/examples_per_sec")[-1].value)
    return (sum(rates) / len(rates) if rates else float("nan")), wall, run_dir


def busy_processes(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def policy_line(run_dir: Path) -> str:
    log = next(run_dir.rglob("train.log"), None)
    lines = [ln for ln in log.read_text().splitlines() if "threads:" in ln] if log else []
    return lines[0].split(" - ", 1)[-1] if lines else "?"


def busy(steps: int, rounds: int) -> None:
    args = [f"max_steps={steps}", f"trainer.log_every={steps // 2}", f"trainer.eval_every={steps}"]
    for r in range(rounds):
        quiet, _, run_dir = train(args, clean_env(OMP_NUM_THREADS=str(os.cpu_count())))  # all cores
        print(f"round {r + 1}: quiet {quiet:8.0f} ex/s   [{policy_line(run_dir)}]", flush=True)
        hogs = busy_processes(2)
        try:
            time.sleep(2)  # let them start: the policy counts the runnable tasks at start
            loaded, _, run_dir = train(args, clean_env())
            print(f"round {r + 1}: beside 2 busy processes {loaded:8.0f} ex/s = {loaded / quiet:.2f}x quiet "
                  f"(target >= 0.3x)   [{policy_line(run_dir)}]", flush=True)
            active, _, run_dir = train(args, clean_env(OMP_WAIT_POLICY="ACTIVE"))
            print(f"round {r + 1}: same, OMP_WAIT_POLICY=ACTIVE by hand {active:8.0f} ex/s = {active / quiet:.2f}x "
                  f"quiet   [{policy_line(run_dir)}]", flush=True)
        finally:
            for h in hogs:
                h.kill()


def sweep(steps: int, rounds: int) -> None:
    args = [f"max_steps={steps}", f"trainer.log_every={steps // 2}", f"trainer.eval_every={steps}"]
    for r in range(rounds):
        _, parallel, run_dir = train(["-m", "launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1", *args],
                                     clean_env())
        line = policy_line(run_dir)
        one = sum(train([f"seed={s}", *args], clean_env())[1] for s in (0, 1))
        print(f"round {r + 1}: 2-job joblib sweep {parallel:6.1f} s, the two jobs one after the other {one:6.1f} s: "
              f"{parallel / one:.2f}x (target <= 1.1x)   [{line}]", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=["busy", "sweep"])
    p.add_argument("--steps", type=int, default=300, help="training steps per run")
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    (busy if a.mode == "busy" else sweep)(a.steps, a.rounds)


if __name__ == "__main__":
    main()
