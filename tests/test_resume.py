"""Never lose a run: SIGKILL / SIGTERM part way, then resume, ends bitwise where an uninterrupted run ends."""
import signal
import time
from pathlib import Path

import pytest
from clitools import TINY, assert_same_tensors, load, run, scalars, start, wait_for

from vae_cli.training.resume import find_checkpoint

STEPS = 300
ARGS = [*TINY, f"max_steps={STEPS}", "trainer.eval_every=50", "trainer.log_every=10"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The same seed and config, never interrupted."""
    run_dir = tmp_path_factory.mktemp("reference")
    done = run(*ARGS, f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr
    return run_dir


def assert_same_run(run_dir: Path, reference: Path) -> None:
    got, want = load(run_dir / "checkpoints" / "last.pt"), load(reference / "checkpoints" / "last.pt")
    assert got["step"] == want["step"] == STEPS
    for key in ("task", "model", "optimizer", "batches", "rng", "val", "best", "meter"):
        assert_same_tensors(got[key], want[key], key)  # torch.equal on every tensor
    got_tb, want_tb = scalars(run_dir), scalars(reference)
    assert got_tb.keys() == want_tb.keys()
    for tag in want_tb:  # one seamless line: the same steps, once each, with the same values
        if tag != "train/examples_per_sec":
            assert got_tb[tag] == want_tb[tag], tag


def resume_and_check(run_dir: Path, reference: Path) -> int:
    saved = find_checkpoint(run_dir, True)[0]["step"]  # what a resume must continue from
    assert 0 < saved < STEPS
    done = run(f"resume={run_dir}")  # the user types only this: the run's overrides come from its dir
    assert done.returncode == 0, done.stderr
    assert f"resuming at step {saved} " in (run_dir / "train.log").read_text()
    assert_same_run(run_dir, reference)
    n = sum(t.numel() for t in load(run_dir / "checkpoints" / "last.pt")["model"].values())
    print(f"{run_dir.name}: resumed at step {saved}; {n} parameters, Adam state, RNGs, val metrics and "
          f"TensorBoard scalars equal to the uninterrupted run at step {STEPS}")
    return saved


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, reference):
    proc = start(*ARGS, f"hydra.run.dir={tmp_path}")
    wait_for("checkpoints/step_*.pt", tmp_path, proc)
    proc.kill()  # SIGKILL: no handler runs, whatever was being written stays half-written
    assert proc.wait() == -signal.SIGKILL
    resume_and_check(tmp_path, reference)


@pytest.mark.slow
def test_sigterm_saves_exits_143_and_resumes_exactly(tmp_path, reference):
    proc = start(*ARGS, f"hydra.run.dir={tmp_path}")
    wait_for("checkpoints/step_*.pt", tmp_path, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    stopped = load(tmp_path / "checkpoints" / "last.pt")["step"]
    assert f"stopped by SIGTERM after step {stopped}" in (tmp_path / "train.log").read_text()
    assert resume_and_check(tmp_path, reference) == stopped  # the signal's own checkpoint, mid-interval


@pytest.mark.slow
def test_ctrl_c_again_and_again_is_one_line_and_keeps_the_checkpoints(tmp_path):
    """SIGINT every 5 ms from the first checkpoint on until the process ends: exit 130 with the stop's one line
    (a second SIGINT that lands while training: 'stopped without a checkpoint'), never a KeyboardInterrupt
    traceback or a death by SIGINT (-2) during the shutdown; the run still resumes."""
    proc = start(*TINY, "max_steps=3000", "trainer.eval_every=100", f"hydra.run.dir={tmp_path}")
    wait_for("checkpoints/last.pt", tmp_path, proc)
    while proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.005)
    err = proc.communicate()[1]
    assert proc.returncode == 130 and "Traceback" not in err and "KeyboardInterrupt" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines in ([], [f"vae-train: second SIGINT: stopped without a checkpoint; the checkpoints already "
                          f"written are intact: continue with vae-train resume={tmp_path}"]), err
    assert run(f"resume={tmp_path}", "max_steps=120").returncode == 0


@pytest.mark.slow
def test_sweep_rerun_with_resume_true_resumes_each_job_dir_past_a_truncated_checkpoint(tmp_path):
    sweep = ["-m", *TINY, "max_steps=30", "trainer.eval_every=10", "beta=1,2", f"hydra.sweep.dir={tmp_path}"]
    first = run(*sweep)
    assert first.returncode == 0, first.stderr
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [j.name[:9] for j in jobs] == ["0_beta-1_", "1_beta-2_"]
    for name in ("step_000000030.pt", "last.pt"):  # job 0: both copies of step 30 truncated
        path = jobs[0] / "checkpoints" / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    (jobs[1] / "checkpoints" / "last.pt").unlink()
    (jobs[1] / "checkpoints" / "step_000000030.pt").write_bytes(b"garbage")  # job 1: one garbled, one lost
    plain = run(*sweep)  # the same sweep again without resume=true: refused per job, with the sweep's way out
    refused = [ln for ln in plain.stderr.splitlines() if ln.startswith("vae-train: error: job ")]  # not the table
    assert plain.returncode == 2 and len(refused) == 2, plain.stderr
    assert all("re-run the sweep with resume=true" in ln for ln in refused), plain.stderr
    again = run(*sweep, "resume=true")
    assert again.returncode == 0, again.stderr
    assert sorted(p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith(".")) == jobs  # no new dirs
    for job in jobs:
        log = (job / "train.log").read_text()
        assert "skipping a bad checkpoint" in log and "resuming at step 20 " in log
        assert load(job / "checkpoints" / "last.pt")["step"] == 30


def test_signal_handlers_set_a_flag_escalate_on_a_second_signal_and_are_restored_unless_stopping():
    from vae_cli.training.signals import stop_on_signals

    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with stop_on_signals() as stop:  # a run that no signal stopped: the old handlers come back
        assert not stop and signal.getsignal(signal.SIGINT) != before[signal.SIGINT]
    assert {s: signal.getsignal(s) for s in before} == before
    try:
        with pytest.raises(KeyboardInterrupt, match="second SIGINT"):
            with stop_on_signals() as stop:
                signal.raise_signal(signal.SIGINT)  # the handler only records it: training goes on to the step's end
                assert stop and stop.signum == signal.SIGINT
                signal.raise_signal(signal.SIGINT)  # a second Ctrl-C stops at once
        # the process is on its way out: further signals are ignored, so none lands in the exit as a traceback
        assert {s: signal.getsignal(s) for s in before} == {s: signal.SIG_IGN for s in before}
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def test_the_batch_order_state_is_device_independent():
    """The generator behind the batch order lives on the CPU whatever the device: its state, saved and loaded
    with map_location, continues the same order on any device (CUDA too, where one exists)."""
    import io

    import torch
    from vae_cli.data import IndexBatches
    from vae_cli.errors import UserError
    from vae_cli.training.checkpoint import rng_state, set_rng_state

    a = IndexBatches(100, 16, "cpu", seed=3)
    for _ in range(9):  # into the second epoch
        next(a)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, map_location="cpu", weights_only=True)
    want = [next(a).tolist() for _ in range(12)]
    for device in ["cpu"] + ["cuda"] * torch.cuda.is_available():
        b = IndexBatches(100, 16, device, seed=0)
        b.load_state_dict(state)
        assert [next(b).cpu().tolist() for _ in range(12)] == want, device
    assert state["generator"].numel() == torch.Generator().get_state().numel()
    with pytest.raises(UserError, match="CUDA generator"):  # as a CUDA run of the previous vae-cli saved it
        IndexBatches(100, 16, "cpu", seed=0).load_state_dict({**state, "generator": torch.zeros(16, dtype=torch.uint8)})
    if not torch.cuda.is_available():  # a checkpoint from a CUDA machine restores what exists here
        set_rng_state({**rng_state(), "cuda": [torch.zeros(16, dtype=torch.uint8)]})


@pytest.mark.slow
def test_max_steps_below_the_checkpoint_is_refused_and_a_cyclical_run_extends_with_its_period(tmp_path):
    from clitools import one_error_line
    from vae_cli.schedules import Cyclical

    first = run(*TINY, "max_steps=30", "trainer.eval_every=15", "schedule=cyclical", f"hydra.run.dir={tmp_path}")
    assert first.returncode == 0, first.stderr
    below = run(f"resume={tmp_path}", "max_steps=10")
    assert below.returncode == 2 and "max_steps=10 is below step 30" in one_error_line(below.stderr)
    same = run(f"resume={tmp_path}")  # a finished run: says so, trains nothing
    assert same.returncode == 0 and load(tmp_path / "checkpoints" / "last.pt")["step"] == 30, same.stderr
    assert "already reached max_steps=30 at step 30: nothing left to train" in (tmp_path / "train.log").read_text()
    longer = run(f"resume={tmp_path}", "max_steps=60", "trainer.log_every=1")
    assert longer.returncode == 0, longer.stderr
    assert "resuming with changed settings: max_steps: 30 -> 60; trainer.log_every: 5 -> 1" in \
        (tmp_path / "train.log").read_text()  # what a resume may change, it changes in the open
    state = load(tmp_path / "checkpoints" / "last.pt")
    assert state["step"] == 60 and state["config"]["schedule"]["total_steps"] == 30  # the first start's period
    beta, cycle = dict(scalars(tmp_path)["train/beta"]), Cyclical(total_steps=30, n_cycles=4, ratio=0.5)
    assert [beta[s] for s in range(31, 61)] == pytest.approx([cycle(s - 1) for s in range(31, 61)])
    assert min(beta[s] for s in range(31, 61)) == 0.0  # new cycles start past step 30


@pytest.mark.slow
def test_resume_continues_the_lr_and_beta_schedules_exactly(tmp_path):
    """The lr schedule (state in the checkpoint) and beta_t (a function of the step tensor) pick up where the
    killed run stopped: parameters, Adam state and every TensorBoard scalar (train/lr, train/beta) are equal."""
    args = [*ARGS, "lr_schedule=cosine", "lr_schedule.warmup_steps=20", "objective=kl_annealing",
            "schedule.warmup_steps=150"]
    reference = tmp_path / "reference"
    done = run(*args, f"hydra.run.dir={reference}")
    assert done.returncode == 0, done.stderr
    cut = tmp_path / "cut"
    proc = start(*args, f"hydra.run.dir={cut}")
    wait_for("checkpoints/step_*.pt", cut, proc)
    proc.kill()
    proc.wait()
    resume_and_check(cut, reference)
    lrs = [v for _, v in scalars(cut)["train/lr"]]
    assert lrs[0] > lrs[-1] and len(set(lrs)) == len(lrs)  # it really decays
