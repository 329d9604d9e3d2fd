"""Training throughput of the 64 px conv model (model=conv: 4 stride-2 stages) with each likelihood.

    python benchmarks/likelihood_throughput.py            # CPU or CUDA, whichever device=auto picks
    python benchmarks/likelihood_throughput.py --steps 60 --batch 64

Each likelihood trains in its own process through the real run_training (synthetic 3x64x64 images,
dataset=fake, binarizable for Bernoulli only); its examples/s are the trainer's own train/examples_per_sec
windows read back from TensorBoard (the first window, with warm-up, is dropped), and its peak RSS is that
process's ru_maxrss.
"""
import argparse
import resource
import statistics
import subprocess
import sys
import tempfile

LIKELIHOODS = {"bernoulli": ["dataset.binarizable=true"], "gaussian": ["dataset.binarizable=false"],
               "discretized_logistic": ["dataset.binarizable=false"]}


def one(likelihood: str, steps: int, batch: int, device: str) -> None:
    from hydra import compose, initialize_config_module
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from vae_cli.apps.train import run_training

    overrides = ["trainer=debug", "dataset.image_shape=[3,64,64]", "dataset.num_train=2048", "model=conv",
                 f"likelihood={likelihood}", *LIKELIHOODS[likelihood], f"max_steps={steps}",
                 f"trainer.batch_size={batch}", "trainer.eval_every=100000", "trainer.log_every=10",
                 "trainer.progress=false", f"device={device}"]
    with tempfile.TemporaryDirectory() as run_dir:
        with initialize_config_module("vae_cli.configs", version_base="1.3"):
            cfg = compose("train", overrides=overrides)
        val = run_training(cfg, run_dir)
        acc = EventAccumulator(f"{run_dir}/tb", size_guidance={"scalars": 0})
        acc.Reload()
        rates = [e.value for e in acc.Scalars("train/examples_per_sec")][1:]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"RESULT {likelihood} {statistics.median(rates):.1f} {rss:.0f} {val['bits_per_dim']:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return one(args.one, args.steps, args.batch, args.device)
    print(f"64x64x3 conv model, batch {args.batch}, {args.steps} steps, device={args.device}")
    print(f"{'likelihood':<22} {'examples/s':>10} {'peak RSS MB':>12} {'val bits/dim':>13}")
    for name in LIKELIHOODS:
        out = subprocess.run([sys.executable, __file__, "--one", name, "--steps", str(args.steps), "--batch",
                              str(args.batch), "--device", args.device], capture_output=True, text=True)
        result = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")]
        if not result:
            raise SystemExit(f"{name} failed:\n{out.stderr[-2000:]}")
        _, _, rate, rss, bpd = result[0].split()
        print(f"{name:<22} {float(rate):>10.1f} {float(rss):>12.0f} {float(bpd):>13.3f}")


if __name__ == "__main__":
    main()
