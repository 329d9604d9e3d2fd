"""vae-prior trains its code prior with vae-train's loop: a stop saves a checkpoint and a resume ends where an
uninterrupted run ends, TensorBoard holds the loop's scalars, and a non-finite loss is handled as in vae-train."""
import logging
import math
import signal
from pathlib import Path

import pytest
from clitools import assert_same_tensors, load
from hydra import compose, initialize_config_module
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import make_cfg
from vae_cli.apps.prior import fit_code_prior
from vae_cli.apps.train import run_training
from vae_cli.errors import NonFiniteError
from vae_cli.training.signals import StopRequested

VQ = ["model=vqvae", "trainer=debug", "max_steps=4", "trainer.eval_every=4", "dataset.num_train=96",
      "dataset.num_val=64", "dataset.num_test=64", "trainer.num_images=4", "device=cpu", "posterior.num_codes=8",
      "posterior.code_dim=4", "model.encoder.channels=[4,8]", "model.decoder.channels=[8,4]"]
PRIOR = ["max_steps=8", "eval_every=4", "num_images=2", "batch_size=16", "network.channels=4",
         "network.num_layers=1", "device=cpu", "trainer.log_every=2", "trainer.progress=false"]


@pytest.fixture(scope="module")
def vq(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("vq")
    run_training(make_cfg(*VQ), run)
    return run / "checkpoints" / "last.pt"


def prior_cfg(ckpt: Path, *overrides: str):
    with initialize_config_module("vae_cli.configs", version_base="1.3"):
        return compose("code_prior", overrides=[f"ckpt={ckpt}", *PRIOR, *overrides])


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


class StopAfter:
    """A signals.StopFlag that a SIGTERM reaches during step `step` (the loop reads the flag once per step)."""

    def __init__(self, step: int):
        self.step, self.reads, self.signum = step, 0, signal.SIGTERM

    def __bool__(self) -> bool:
        self.reads += 1
        return self.reads >= self.step


def test_a_stopped_prior_resumes_where_an_uninterrupted_one_ends(vq, tmp_path, caplog):
    want = fit_code_prior(prior_cfg(vq), tmp_path / "reference")
    reference = load(tmp_path / "reference" / "checkpoints" / "last.pt")
    with pytest.raises(StopRequested) as stopped:
        fit_code_prior(prior_cfg(vq), tmp_path / "run", stop=StopAfter(3))
    assert stopped.value.step == 3 and stopped.value.exit_code == 128 + signal.SIGTERM
    assert load(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 3
    caplog.set_level(logging.INFO, "vae_cli")
    got = fit_code_prior(prior_cfg(vq, "resume=true"), tmp_path / "run")
    assert "resuming at step 3 (best val val_bits_per_code none yet)" in caplog.text
    assert got == want and want["val_bits_per_code"] < want["uniform_bits_per_code"]
    last = load(tmp_path / "run" / "checkpoints" / "last.pt")
    assert last["task"] == "code_prior" and last["step"] == 8 and last["best"]["metric"] == "val_bits_per_code"
    for key in ("model", "optimizer", "batches", "rng", "val", "best", "meter"):
        assert_same_tensors(last[key], reference[key], key)
    run_tb, ref_tb = scalars(tmp_path / "run"), scalars(tmp_path / "reference")
    assert [s for s, _ in ref_tb["prior/val_bits_per_code"]] == [4, 8]
    assert [s for s, _ in ref_tb["train/loss"]] == [2, 4, 6, 8]
    for tag in ("prior/val_bits_per_code", "prior/train_bits_per_code", "train/loss", "train/grad_norm"):
        assert run_tb[tag] == ref_tb[tag], tag  # one seamless line: the same steps, once each, same values


def test_a_non_finite_prior_loss_is_named_or_skipped_as_in_vae_train(vq, tmp_path):
    fault = ["network._target_=faults.NonFinitePrior", "+network.nan_steps=[2]"]
    with pytest.raises(NonFiniteError, match=r"non-finite value at step 2: loss=nan, grad_norm=nan"):
        fit_code_prior(prior_cfg(vq, *fault), tmp_path / "raise")
    assert not (tmp_path / "raise" / "checkpoints" / "last.pt").exists()  # stopped at the log of step 4
    result = fit_code_prior(prior_cfg(vq, *fault, "trainer.nonfinite=skip"), tmp_path / "skip")
    assert math.isfinite(result["val_bits_per_code"])
    tb = scalars(tmp_path / "skip")
    assert tb["train/skipped_steps"] == [(2, 0.0), (4, 1.0), (6, 1.0), (8, 1.0)]
    assert int(load(tmp_path / "skip" / "checkpoints" / "last.pt")["nonfinite"]["skipped"]) == 1


def test_bad_loop_knobs_are_refused_before_data_loads(vq, tmp_path):
    from vae_cli.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^trainer.nonfinite='sometimes' must be raise or skip$"):
        fit_code_prior(prior_cfg(vq, "trainer.nonfinite=sometimes", "data_dir=/nonexistent"), tmp_path)
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


def test_sigterm_through_the_cli_saves_exits_143_and_resume_finishes(vq, tmp_path):
    """The real vae-prior: SIGTERM mid-fit writes a checkpoint and exits 143; `vae-prior resume=<run dir>` (its
    overrides come from the run dir) trains on to max_steps and writes prior.pt."""
    import subprocess
    import sys

    from clitools import env, wait_for

    exe = str(Path(sys.executable).parent / "vae-prior")
    run_dir = tmp_path / "prior"
    base = [a for a in PRIOR if not a.startswith(("max_steps=", "eval_every="))]
    args = [f"ckpt={vq}", *base, "max_steps=4000", "eval_every=2000", "trainer.keep_last=1",
            "trainer.eval_every=20", "trainer.log_every=10", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen([exe, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    wait_for("checkpoints/step_*.pt", run_dir, proc, timeout=120)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "Traceback" not in err, err
    stopped = load(run_dir / "checkpoints" / "last.pt")["step"]
    assert 0 < stopped < 4000
    done = subprocess.run([exe, f"resume={run_dir}", "max_steps=" + str(stopped + 3)], capture_output=True,
                          text=True, env=env(), timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"resuming at step {stopped} " in done.stderr + done.stdout
    assert load(run_dir / "checkpoints" / "last.pt")["step"] == stopped + 3
    assert load(vq.parent / "prior.pt")["task"] == "code_prior"
