"""Ctrl-C in vae-eval, vae-sample and vae-prior: a real SIGINT to the real CLI mid-work is one line on stderr
and exit 130, never a KeyboardInterrupt traceback."""
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from clitools import TINY, env

BIN = Path(sys.executable).parent


def interrupt_when(tool: str, args: list[str], ready: str, cwd: Path) -> subprocess.CompletedProcess:
    """Start `tool args`, wait for a stdout line containing `ready` (the work has begun), send SIGINT."""
    proc = subprocess.Popen([str(BIN / tool), *args], cwd=cwd, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,  # SIGINT as a terminal delivers it, whatever the
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # parent ignores
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if ready in line:
            break
    else:
        proc.wait()
        pytest.fail(f"{tool} ended before '{ready}': {''.join(seen)} {proc.stderr.read()}")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(seen) + out, err)


def train(cwd: Path, *overrides: str) -> Path:
    done = subprocess.run([str(BIN / "vae-train"), "hydra.run.dir=run", *overrides], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return cwd / "run"


def assert_one_line(done: subprocess.CompletedProcess, tool: str, unsaved: str) -> None:
    assert done.returncode == 130, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [f"{tool}: interrupted by SIGINT before it finished; {unsaved}"]


@pytest.mark.slow
def test_ctrl_c_in_vae_eval_and_vae_sample_is_one_line(tmp_path):
    run = train(tmp_path, *TINY)
    done = interrupt_when("vae-eval", [f"ckpt={run}", "k=100000000", "k_chunk=2", "progress=false",
                                       "quality=false"], "k=100000000", tmp_path)
    assert_one_line(done, "vae-eval", "metrics.json and report.txt are written at the end")
    assert not (run / "eval-best" / "metrics.json").exists()
    done = interrupt_when("vae-sample", [f"ckpt={run}", "mode._target_=faults.Stall"], "stalling", tmp_path)
    assert_one_line(done, "vae-sample", "the pictures are written at the end")


@pytest.mark.slow
def test_ctrl_c_in_vae_prior_saves_and_says_how_to_resume(tmp_path):
    """vae-prior trains on vae-train's loop: the first SIGINT finishes the step, saves, and exits 130."""
    run = train(tmp_path, "trainer=debug", "model=vqvae", "posterior.num_codes=8", "device=cpu")
    done = interrupt_when("vae-prior", [f"ckpt={run}", "max_steps=100000000", "eval_every=100000000",
                                        "network.channels=8", "network.num_layers=2", "batch_size=8",
                                        "hydra.run.dir=prior"], "code prior over", tmp_path)
    assert done.returncode == 130, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout and "KeyboardInterrupt" not in done.stderr
    assert "vae-prior resume=" in done.stdout + done.stderr
