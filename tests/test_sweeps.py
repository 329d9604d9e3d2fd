"""Sweep presets: launcher=joblib|slurm and sweeper=optuna compose; joblib runs a 2-job sweep in parallel."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module

from vae_cli.training import sweeps


def plugin(name: str):
    installed = importlib.util.find_spec(f"hydra_plugins.{name}") is not None
    return pytest.mark.skipif(not installed, reason=f"{name} is not installed (pip install -e \".[sweeps]\")")


def hydra_cfg(*overrides: str):
    with initialize_config_module("vae_cli.configs", version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


@plugin("hydra_joblib_launcher")
def test_joblib_preset_composes():
    cfg = hydra_cfg("launcher=joblib")
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2


@plugin("hydra_submitit_launcher")
def test_slurm_preset_composes():
    cfg = hydra_cfg("launcher=slurm", "hydra.launcher.partition=gpu")
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert (cfg.hydra.launcher.gpus_per_node, cfg.hydra.launcher.partition) == (1, "gpu")


@plugin("hydra_optuna_sweeper")
def test_optuna_preset_maximizes_val_elbo_over_beta_and_latent_dim():
    cfg = hydra_cfg("sweeper=optuna")
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert str(cfg.hydra.sweeper.direction) == "maximize"  # vae-train returns the val ELBO: higher is better
    assert set(cfg.hydra.sweeper.params) == {"beta", "latent_dim"}


@pytest.mark.parametrize("override, module", [("launcher=joblib", "hydra_joblib_launcher"),
                                              ("launcher=slurm", "hydra_submitit_launcher"),
                                              ("sweeper=optuna", "hydra_optuna_sweeper")])
def test_a_missing_sweep_plugin_is_one_line_naming_the_extra(tmp_path, override, module):
    if importlib.util.find_spec(f"hydra_plugins.{module}") is not None:
        pytest.skip(f"{module} is installed here")
    from clitools import run

    done = run("-m", override, "trainer=debug", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"vae-train: error: {override} needs the Hydra plugin {module.replace('_', '-')}")
    assert 'pip install -e ".[sweeps]"' in done.stderr and not (tmp_path / "sweep").exists()


@plugin("hydra_optuna_sweeper")
def test_optuna_sweep_runs_trials_and_reports_the_best_val_elbo(tmp_path):
    import yaml
    from clitools import TINY, run, scalars

    done = run("-m", "sweeper=optuna", "hydra.sweeper.n_trials=3", *TINY, "max_steps=4",
               f"hydra.sweep.dir={tmp_path}", timeout=300)
    assert done.returncode == 0, done.stderr
    result = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    trials = {e.parent for e in tmp_path.glob("*/events.out.tfevents.*")}
    finals = [scalars(trial)["val/elbo"][-1][1] for trial in trials]  # each trial's last val ELBO
    assert len(finals) == 3 and result["best_value"] == pytest.approx(max(finals))  # maximized, in nats


def test_gpu_for_job_spreads_jobs_over_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert [sweeps.gpu_for_job(n) for n in range(4)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]
    assert sweeps.gpu_for_job() == "cuda:0"  # outside Hydra: job 0
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert sweeps.gpu_for_job(5) == "auto"


@pytest.mark.slow
@plugin("hydra_joblib_launcher")
def test_joblib_runs_a_two_job_debug_sweep_in_parallel(tmp_path):
    """Each job waits at a barrier (tests/sweep_barrier.py) until both have started: only parallel jobs pass it."""
    barrier = tmp_path / "barrier"
    cmd = [sys.executable, "-m", "vae_cli", "-m", "launcher=joblib", "trainer=debug", "device=cpu", "beta=1,4",
           "max_steps=10", f"hydra.sweep.dir={tmp_path / 'sweep'}", "+hydra.callbacks.barrier._target_=sweep_barrier.Barrier",
           f"+hydra.callbacks.barrier.dir={barrier}", "+hydra.callbacks.barrier.count=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert [j.name.split("_")[0] for j in jobs] == ["0", "1"]
    for job in jobs:
        assert (job / "checkpoints" / "last.pt").is_file()
    assert len(list(barrier.glob("started_*"))) == 2  # two worker processes
    assert [(barrier / f"saw_job{n}").read_text() for n in (0, 1)] == ["2", "2"]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", pytest.param("joblib", marks=plugin("hydra_joblib_launcher"))])
def test_a_bad_job_fails_alone_and_the_sweep_ends_with_one_summary_line(tmp_path, launcher):
    """latent_dim=0,4 runs both jobs; job 0 fails with its own line and error.txt in its own
    dir; one summary line; exit 2."""
    from clitools import TINY, run

    extra = ["launcher=joblib"] if launcher == "joblib" else []
    done = run("-m", *[a for a in TINY if not a.startswith("latent_dim=")], "max_steps=10", "latent_dim=0,4",
               *extra, f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("vae-train:")]
    assert lines[0] == "vae-train: error: job 0 (latent_dim=0): latent_dim=0 must be a positive integer"
    assert lines[-1].startswith("vae-train: sweep: 1 of 2 jobs passed; failed: job 0 (latent_dim=0) (see ")
    assert len(lines) == 2
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [j.name.split("_")[0] for j in jobs] == ["0", "1"]
    assert (jobs[0] / "error.txt").read_text().strip() == "latent_dim=0 must be a positive integer"
    assert not (jobs[0] / "checkpoints").exists()
    assert (jobs[1] / "checkpoints" / "last.pt").is_file() and not (jobs[1] / "error.txt").exists()
