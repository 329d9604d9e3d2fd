"""The parts of benchmarks/gpu_check.sh: each appends one row (part, PASS/FAIL, figure, seconds) to <out>/table.tsv.

    python benchmarks/gpu_check.py env|throughput|resume|sweep|quality|table --out DIR [--dry-run]

--dry-run: the same steps on the CPU at a tiny size (CI runs it so the script cannot rot before a GPU appears).
Every training run is the real CLI in a subprocess (`python -m vae_cli`), except the throughput rows, which
reuse benchmarks/throughput.py (the real run_training in this process). Nothing here needs hydra at import:
the `env` part runs before the offline install.
"""
import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
# (name, overrides, target seconds per training epoch or None); graph on = trainer.cuda_graph=auto
GRAPH_CASES = [("default MLP", [], 0.2), ("conv", ["model=conv"], 0.4),
               ("iwae_paper_1layer", ["experiment=iwae_paper_1layer"], 0.5), ("hierarchical", ["model=hierarchical"], None),
               ("default MLP bf16", ["trainer.precision=bf16"], None)]
DRY = ["dataset=fake", "dataset.num_train=256", "dataset.num_val=64", "trainer.num_images=4",
       "trainer.eval_batch_size=64"]  # --dry-run: tiny synthetic data
QUALITY_TARGET = 86.0  # nats, IW-NLL k=5000 on the 10k test images after 5 GPU-minutes


def add_row(out: Path, part: str, ok: bool, figure: str, seconds: float) -> None:
    with open(out / "table.tsv", "a") as f:
        f.write(f"{part}\t{'PASS' if ok else 'FAIL'}\t{' '.join(figure.split())}\t{seconds:.0f}\n")
    print(f"{part}: {'PASS' if ok else 'FAIL'}: {figure}", flush=True)


def vae(*args: str, cwd: Path | None = None, tool: str = "train_main", timeout: float | None = None):
    """The real CLI in a subprocess -> CompletedProcess (stdout and stderr text)."""
    code = f"from vae_cli.cli import {tool}; {tool}()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def part_env(args) -> tuple[bool, str]:
    import torch

    if args.dry_run:
        return True, f"dry run on the CPU: torch {torch.__version__}, {os.cpu_count()} cores"
    if not torch.cuda.is_available():
        return False, f"no CUDA device visible to torch {torch.__version__} (CUDA build {torch.version.cuda})"
    free, total = torch.cuda.mem_get_info()
    smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True)
    driver = smi.stdout.strip().splitlines()[0] if smi.returncode == 0 and smi.stdout.strip() else "?"
    return True, (f"{torch.cuda.get_device_name()} | driver {driver} | torch {torch.__version__} | CUDA "
                  f"{torch.version.cuda} | {free / 2**30:.1f} of {total / 2**30:.1f} GiB free")


def part_throughput(args) -> tuple[bool, str]:
    """Graph on vs off for each case: s/epoch (training only), ex/s, and whether the step was captured."""
    import torch
    from throughput import TRAIN_EXAMPLES, vae_cli_run

    device = torch.device("cpu" if args.dry_run else "cuda")
    steps = 3 if args.dry_run else args.steps
    lines = Captured()
    logging.getLogger("vae_cli").addHandler(lines)
    logging.getLogger("vae_cli").setLevel(logging.INFO)
    ok, rows = True, []
    for name, overrides, target in GRAPH_CASES[:2] if args.dry_run else GRAPH_CASES:
        for graph in ("auto", "false"):
            lines.messages.clear()
            extra = DRY if args.dry_run else []
            rates, _, cfg, _ = vae_cli_run(device, [*overrides, *extra, f"trainer.cuda_graph={graph}"], steps, 2)
            batch = cfg.trainer.batch_size
            per_epoch = (TRAIN_EXAMPLES // batch) * batch / rates[-1]
            captured = "captured" if any("captured as one CUDA graph" in m for m in lines.messages) else "eager"
            passed = target is None or graph == "false" or args.dry_run or per_epoch <= target
            ok &= passed
            goal = f" (target <= {target})" if target and graph == "auto" else ""
            rows.append(f"{name} graph={graph}: {per_epoch:.3f} s/epoch{goal}, {rates[-1]:.0f} ex/s, {captured}")
            print(f"  {rows[-1]}{'' if passed else '  <-- FAIL'}", flush=True)
    (args.out / "throughput.txt").write_text("\n".join(rows) + "\n")
    return ok, "; ".join(r for r in rows if "graph=auto" in r) + " (graph off: throughput.txt)"


class Captured(logging.Handler):
    """The vae_cli log lines of an in-process run (the cuda_graph: line says whether the step was captured)."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record) -> None:
        self.messages.append(record.getMessage())


def part_resume(args) -> tuple[bool, str]:
    """A run stopped after `n` steps on one device continues on the other to 2n, both ways."""
    import torch

    n, other = (4, "cpu") if args.dry_run else (200, "cuda")
    small = DRY if args.dry_run else []
    figures, ok = [], True
    for i, (first, second) in enumerate((("cpu", other), (other, "cpu"))):
        run_dir = args.out / f"resume-{i + 1}-{first}-then-{second}"
        start = vae(*small, f"device={first}", f"max_steps={n}", f"trainer.eval_every={n}", "trainer.progress=false",
                    f"hydra.run.dir={run_dir}")
        again = vae(f"resume={run_dir}", f"device={second}", f"max_steps={2 * n}", "trainer.progress=false")
        (run_dir.parent / f"{run_dir.name}.log").write_text(start.stdout + start.stderr + again.stdout + again.stderr)
        last = run_dir / "checkpoints" / "last.pt"
        ckpt = torch.load(last, map_location="cpu", weights_only=False) if last.is_file() else {}
        good = (start.returncode == again.returncode == 0 and ckpt.get("step") == 2 * n
                and int(ckpt.get("step_tensor", -1)) == 2 * n and f"resuming at step {n}" in again.stdout + again.stderr)
        ok &= good
        figures.append(f"{first}->{second}: steps {n}->{ckpt.get('step', '?')}, exit {start.returncode}/"
                       f"{again.returncode}" + ("" if good else f" ({again.stderr.strip().splitlines()[-1:]})"))
    return ok, "; ".join(figures)


def part_sweep(args) -> tuple[bool, str]:
    """`launcher=joblib hydra.launcher.n_jobs=N` of N seeds on the one device against one run alone."""
    from contention import clean_env, train

    jobs, steps = (2, 6) if args.dry_run else (4, args.steps)
    common = [f"max_steps={steps}", f"trainer.log_every={steps // 2}", f"trainer.eval_every={steps}",
              *([*DRY, "device=cpu"] if args.dry_run else [])]
    one, one_wall, _ = train(common, clean_env())
    seeds = ",".join(str(s) for s in range(jobs))
    each, wall, sweep_dir = train(["-m", "launcher=joblib", f"hydra.launcher.n_jobs={jobs}", f"seed={seeds}",
                                   *common], clean_env())
    done = len(list(sweep_dir.rglob("checkpoints/last.pt")))
    ratio = each * jobs / one
    ok = done == jobs and (args.dry_run or ratio >= 1.0)
    return ok, (f"{done}/{jobs} jobs done; total {each * jobs:.0f} ex/s vs one run {one:.0f} ex/s = {ratio:.2f}x "
                f"(target >= 1); wall {wall:.0f} s vs {one_wall:.0f} s for one")


def part_quality(args) -> tuple[bool, str]:
    """iwae_paper_1layer for `minutes` (stopped by SIGTERM, which saves a checkpoint), then IW-NLL k=5000.
    A dry run trains 10 steps instead."""
    run_dir, out = args.out / "quality-run", args.out / "quality-eval"
    train = ["experiment=iwae_paper_1layer", "trainer.progress=false", "trainer.eval_every=20000",
             f"hydra.run.dir={run_dir}", *([*DRY, "max_steps=10"] if args.dry_run else [])]
    proc = subprocess.Popen([sys.executable, "-c", "from vae_cli.cli import train_main; train_main()", *train],
                            stdout=subprocess.DEVNULL, stderr=open(args.out / "quality-train.log", "w"))
    try:
        proc.wait(timeout=None if args.dry_run else args.minutes * 60)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the trainer saves the finished step and exits 143
        proc.wait()
    k, n = ("50", "num_examples=20") if args.dry_run else ("5000", "num_examples=null")
    ev = vae(f"ckpt={run_dir / 'checkpoints' / 'last.pt'}", f"out={out}", f"k={k}", n, "quality=false",
             "progress=false", tool="eval_main")
    (args.out / "quality-eval.log").write_text(ev.stdout + ev.stderr)
    if ev.returncode != 0 or not (out / "metrics.json").is_file():
        return False, f"vae-eval failed (exit {ev.returncode}): see quality-eval.log"
    metrics = json.loads((out / "metrics.json").read_text())
    nll, step = metrics.get("iw_nll"), metrics.get("step", "?")
    ok = nll is not None and (args.dry_run or nll <= QUALITY_TARGET)
    length = "10 steps (dry run)" if args.dry_run else f"{args.minutes:g} min"
    return ok, f"IW-NLL (k={k}) {nll:.2f} nats after {length} (step {step}; target <= {QUALITY_TARGET})"


def part_table(args) -> None:
    rows = [ln.split("\t") for ln in (args.out / "table.tsv").read_text().splitlines() if ln.strip()]
    width = max(len(r[0]) for r in rows)
    text = "\n".join(f"{r[0]:<{width}}  {r[1]:<4}  {r[3]:>4} s  {r[2]}" for r in rows)
    verdict = "ALL PASS" if all(r[1] == "PASS" for r in rows) else "SOME FAIL"
    text = f"{'part':<{width}}  {'':<4}  {'time':>6}  figure\n{text}\n{verdict}\n"
    (args.out / "table.txt").write_text(text)
    print(text, end="")


PARTS = {"env": part_env, "throughput": part_throughput, "resume": part_resume, "sweep": part_sweep,
         "quality": part_quality}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("part", choices=[*PARTS, "table"])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--steps", type=int, default=400, help="steps per throughput window and per sweep job")
    p.add_argument("--minutes", type=float, default=5.0, help="training minutes of the quality part")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.part == "table":
        return part_table(args)
    tick = time.perf_counter()
    try:
        ok, figure = PARTS[args.part](args)
    except Exception as e:  # noqa: BLE001 -- a part that crashes is a FAIL row naming why; the next part runs
        ok, figure = False, f"{type(e).__name__}: {str(e).strip().splitlines()[-1:] or ''}"
        import traceback

        traceback.print_exc()
    add_row(args.out, args.part, ok, figure, time.perf_counter() - tick)


if __name__ == "__main__":
    main()
