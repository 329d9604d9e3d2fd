"""A run is never lost, mixed or overwritten: the real CLI against a finished run dir R."""
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from clitools import BIN, cli, env, load, one_error_line, one_line, only_run_dir, run, start, TINY

ARGS = [*TINY, "max_steps=30", "trainer.eval_every=15"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """R: `vae-train trainer=debug ... hydra.run.dir=R`, finished at step 30 (step_15, step_30, last, best)."""
    run_dir = tmp_path_factory.mktemp("finished") / "R"
    done = run(*ARGS, f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr
    return run_dir


@pytest.fixture
def R(finished, tmp_path) -> Path:
    copy = tmp_path / "R"
    shutil.copytree(finished, copy)
    return copy


def snapshot(run_dir: Path) -> dict:
    """Every file's bytes, except the lock file (it names the last process that held the lock)."""
    return {p: p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.mark.slow
def test_a_refused_resume_changes_nothing_and_the_plain_resume_still_works(R):
    before = snapshot(R)
    refused = run(f"resume={R}", "latent_dim=8")
    assert refused.returncode == 2
    assert "trained with another config (latent_dim: 4 -> 8" in one_error_line(refused.stderr)
    assert snapshot(R) == before  # .hydra/, train.log, checkpoints: byte for byte
    again = run(f"resume={R}", "max_steps=40")  # the requeue command, extended
    assert again.returncode == 0, again.stderr
    assert "resuming at step 30 " in (R / "train.log").read_text()
    assert load(R / "checkpoints" / "last.pt")["step"] == 40
    assert "max_steps=40" in (R / ".hydra" / "overrides.yaml").read_text()
    kept = list((R / ".hydra").glob("attempt-*/overrides.yaml"))  # the first start's files, kept beside
    assert len(kept) == 1 and kept[0].read_text() == before[R / ".hydra" / "overrides.yaml"].decode()


@pytest.mark.slow
def test_a_new_run_over_a_finished_one_is_refused_naming_both_ways_out(R):
    before = snapshot(R)
    refused = run(*ARGS, "trainer.lr=0.01", f"hydra.run.dir={R}")
    assert refused.returncode == 2
    line = one_error_line(refused.stderr)
    assert f"resume={R}" in line and "another hydra.run.dir" in line
    assert snapshot(R) == before
    fresh = R.parent / "new"  # a failed start in a new dir leaves nothing behind
    assert run(*ARGS, "latent_dim=0", f"hydra.run.dir={fresh}").returncode == 2
    assert not any(p.is_file() for p in fresh.rglob("*"))


@pytest.mark.slow
def test_a_refused_start_removes_only_the_dirs_it_made(tmp_path):
    """A user's own empty dir (typed as hydra.run.dir, or as resume=) and its parent stay; the dirs made for
    the refused start go."""
    mine = tmp_path / "mine"
    (mine / "empty").mkdir(parents=True)
    for run_dir in (mine / "empty", mine / "new" / "R"):
        assert run(*ARGS, "latent_dim=0", f"hydra.run.dir={run_dir}").returncode == 2
    refused = run(f"resume={mine / 'empty'}")
    assert "no readable checkpoint" in one_error_line(refused.stderr)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["empty", "mine"]


@pytest.mark.slow
def test_a_second_process_in_the_same_run_dir_gets_one_line_naming_the_holder(R):
    first = start(f"resume={R}", "max_steps=1000000", "trainer.eval_every=1000000")
    try:
        deadline = time.monotonic() + 90
        while f"PID {first.pid} " not in (R / ".lock").read_text():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        second = run(f"resume={R}", "max_steps=40")
        assert second.returncode == 2
        line = one_error_line(second.stderr)
        assert f"run dir {R} is in use by PID {first.pid} " in line
    finally:
        first.kill()  # SIGKILL: the kernel drops the lock, no stale lock is left
        first.wait()
    third = run(f"resume={R}", "max_steps=35")
    assert third.returncode == 0, third.stderr
    assert load(R / "checkpoints" / "last.pt")["step"] == 35


@pytest.mark.slow
def test_branching_from_an_older_step_retires_the_newer_files_and_resume_picks_the_branch(R):
    ckpts = R / "checkpoints"
    old30 = (ckpts / "step_000000030.pt").read_bytes()
    branch = run(f"resume={ckpts / 'step_000000015.pt'}", "max_steps=25", "trainer.eval_every=5")
    assert branch.returncode == 0, branch.stderr
    aside = list(ckpts.glob("abandoned-*"))
    assert len(aside) == 1
    assert (aside[0] / "step_000000030.pt").read_bytes() == old30  # moved, never deleted
    assert {p.name for p in aside[0].iterdir()} == {"step_000000030.pt", "last.pt", "best.pt"}
    assert sorted(p.name for p in ckpts.glob("step_*.pt")) == ["step_000000015.pt", "step_000000020.pt",
                                                               "step_000000025.pt"]
    again = run(f"resume={R}", "max_steps=30")
    assert again.returncode == 0, again.stderr
    assert "resuming at step 25 " in (R / "train.log").read_text()


def mount_tmpfs(folder: Path, size: str) -> None:
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")


@pytest.mark.slow
def test_a_disk_filling_up_mid_run_gives_one_line_and_keeps_the_run_resumable(tmp_path):
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "2m")
    try:
        run_dir = disk / "R"
        first = run(*ARGS, f"hydra.run.dir={run_dir}")
        assert first.returncode == 0, first.stderr
        before = snapshot(run_dir / "checkpoints")
        filler = disk / "filler"
        try:  # fill the disk, then give back its last few KiB
            with open(filler, "wb", buffering=0) as f:
                while True:
                    f.write(b"\0" * 4096)
        except OSError:
            pass
        os.truncate(filler, filler.stat().st_size - 24 * 1024)
        full = run(f"resume={run_dir}", "max_steps=5000", "trainer.log_every=1", "trainer.eval_every=100")
        assert full.returncode == 2
        line = one_error_line(full.stderr)
        assert "No space left on device" in line and str(run_dir) in line
        after = snapshot(run_dir / "checkpoints")
        assert all(after.get(p) == b for p, b in before.items() if p.name.startswith("step_"))
        filler.unlink()
        again = run(f"resume={run_dir}", "max_steps=200", "trainer.log_every=10")
        assert again.returncode == 0, again.stderr
        assert load(run_dir / "checkpoints" / "last.pt")["step"] == 200
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.mark.slow
def test_a_run_dir_that_cannot_be_created_gives_one_line(tmp_path):
    (tmp_path / "file").write_text("in the way")
    for override in ("hydra.run.dir=/proc/forbidden", f"hydra.run.dir={tmp_path / 'file' / 'R'}"):
        done = run(*ARGS, override)
        assert done.returncode == 2
        assert "cannot be created" in one_error_line(done.stderr), override
    sweep = run("-m", *ARGS, "beta=1,2", f"hydra.sweep.dir={tmp_path / 'file' / 'S'}")
    assert sweep.returncode == 2 and "hydra.sweep.dir=" in one_error_line(sweep.stderr)


@pytest.mark.slow
def test_a_checkpoint_the_safe_loader_refuses_gives_one_line_and_no_unsafe_advice(tmp_path):
    import torch

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"model": Payload(), "config": {}, "step": 1}, tmp_path / "evil.pt")
    done = run(f"resume={tmp_path / 'evil.pt'}")
    assert done.returncode == 2 and "this must never run" not in done.stdout + done.stderr
    line = one_error_line(done.stderr)
    assert "is not a vae-cli checkpoint or is not trusted" in line and "weights_only" not in line
    (tmp_path / "notes.txt").write_text("x = 1\n")  # a text file: corrupt, not "untrusted Python objects"
    line = one_error_line(run(f"resume={tmp_path / 'notes.txt'}").stderr)
    assert "is corrupt or not a vae-cli checkpoint (not a file torch.save writes)" in line, line


def test_signals_still_save_after_the_lock_is_taken(R):
    """The lock does not get in the way of SIGTERM's checkpoint: exit 143, resumable by the lock's next holder."""
    proc = start(f"resume={R}", "max_steps=1000000", "trainer.eval_every=1000000")
    deadline = time.monotonic() + 90
    while "resuming at step 30 " not in ((R / "train.log").read_text() if (R / "train.log").exists() else ""):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert load(R / "checkpoints" / "last.pt")["step"] > 30


def test_disk_errors_are_one_line_and_quiet_in_writer_threads(capsys):
    """The pieces behind case 7 where no tmpfs can be mounted: an ENOSPC (also wrapped) becomes one UserError
    naming the run dir; a writer thread's OSError prints nothing (the main thread re-raises it), others do."""
    import errno
    import threading

    from vae_cli.training.rundir import _quiet_disk_errors
    from vae_cli.validate import disk_error

    full = OSError(errno.ENOSPC, "No space left on device")
    try:
        raise RuntimeError("writing the event file") from full
    except RuntimeError as wrapped:
        message = str(disk_error(wrapped, "/runs/R"))
    assert message.startswith("cannot write to run dir /runs/R: No space left on device;")
    assert "resume=/runs/R" in message and "\n" not in message
    assert disk_error(ValueError("not a disk"), "/runs/R") is None
    seen = []
    hook = _quiet_disk_errors(lambda args: seen.append(args.exc_value))
    for exc in (full, KeyError("a bug")):
        def boom(exc=exc):
            raise exc
        previous, threading.excepthook = threading.excepthook, hook
        try:
            t = threading.Thread(target=boom)
            t.start()
            t.join()
        finally:
            threading.excepthook = previous
    assert [type(e) for e in seen] == [KeyError]


@pytest.mark.slow
def test_resume_keeps_its_dir_name(tmp_path):
    cli("vae-train", *TINY, "max_steps=10", "trainer.eval_every=5", cwd=tmp_path)
    run = only_run_dir(tmp_path / "outputs")
    proc = cli("vae-train", f"resume={run}", "max_steps=20", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert only_run_dir(tmp_path / "outputs") == run


# 6. failed starts --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_failed_starts_leave_no_run_dir(tmp_path):
    refused = cli("vae-train", *TINY, "latent_dim=0", cwd=tmp_path)
    assert one_line(refused, "vae-train") and refused.stdout == ""  # not even the thread policy's line
    empty = tmp_path / "no_data"
    empty.mkdir()
    proc = subprocess.run([str(BIN / "vae-train"), "dataset=fashion_mnist", "dataset.download=false"], cwd=tmp_path,
                          capture_output=True, text=True, env={**env(), "VAE_DATA_DIR": str(empty)})
    assert proc.returncode == 2 and "FashionMNIST is not in" in proc.stderr
    assert list((tmp_path / "outputs").iterdir()) == []
    kept = tmp_path / "kept"
    (kept / "notes").mkdir(parents=True)
    (kept / "notes" / "mine.txt").write_text("x")
    assert cli("vae-train", *TINY, "latent_dim=0", f"hydra.run.dir={kept}", cwd=tmp_path).returncode == 2
    assert (kept / "notes" / "mine.txt").is_file()  # a dir holding anything else is left alone
