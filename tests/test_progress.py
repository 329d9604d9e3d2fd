"""The progress bar on a terminal, plain progress lines without one, quiet sweeps: the real CLI."""
import pytest

from clitools import TINY, cli, only_run_dir, run_in_pty


def test_progress_bar_on_a_terminal_with_start_and_end_lines(tmp_path):
    code, terminal, out = run_in_pty([*TINY, "max_steps=64", "trainer.eval_every=32"], tmp_path)
    assert code == 0, terminal + out
    assert "epoch 2/2 100%|" in terminal and "step 64/64" in terminal  # 32 batches of 16 per epoch
    assert "ex/s" in terminal and "elbo -" in terminal and "<00:00" in terminal  # rate, ETA, latest ELBO
    run = only_run_dir(tmp_path / "outputs")
    start = next(line for line in out.splitlines() if "model: " in line and "parameters" in line)
    assert "on cpu" in start and "64 steps = 2 epochs" in start and f"run dir: {run.resolve()}\n" in out
    end = next(line for line in out.splitlines() if "done: " in line)
    assert "done: 64 steps in 0:" in end and "val elbo" in end
    assert f"best checkpoint: {run.resolve() / 'checkpoints' / 'best.pt'}\n" in out
    assert (run / "checkpoints" / "best.pt").is_file() and "progress:" not in out


@pytest.mark.slow
def test_progress_lines_without_a_terminal_and_quiet_in_multirun(tmp_path):
    proc = cli("vae-train", *TINY, "trainer.progress_every_s=0", cwd=tmp_path)
    lines = [ln for ln in proc.stdout.splitlines() if "progress: " in ln]
    assert proc.returncode == 0 and len(lines) == 30  # every step when the interval is 0 s
    assert "epoch 1/1  step 30/30 (100%)" in lines[-1] and "ETA 0:00" in lines[-1] and "ex/s" in lines[-1]
    assert "\r" not in proc.stderr  # no bar drawn into a log file
    proc = cli("vae-train", "-m", *TINY, "trainer.progress_every_s=0", "seed=0,1", cwd=tmp_path)
    assert proc.returncode == 0 and "progress: " not in proc.stdout + proc.stderr
    proc = cli("vae-train", "-m", *TINY, "trainer.progress_every_s=0", "trainer.progress=true", "seed=0",
               cwd=tmp_path)
    assert proc.returncode == 0 and "progress: " in proc.stdout
