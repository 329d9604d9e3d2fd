"""vae-eval end to end: the real CLI in a subprocess on a `vae-train trainer=debug` checkpoint, and bad input."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO
from hydra import compose, initialize_config_module
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vae_cli.apps.evaluate import run_eval
from vae_cli.apps.sample import run_sample
from vae_cli.errors import UserError

BIN = Path(sys.executable).parent
KEYS = {"checkpoint", "step", "version", "dataset", "split", "num_examples", "k", "k_chunk", "batch_size", "seed",
        "data_noise", "likelihood", "device", "elbo", "distortion", "rate", "bits_per_dim", "iw_nll",
        "iw_nll_stderr", "iw_nll_bits_per_dim", "iw_gap", "collapse", "sample_quality", "wall_time_s"}
COLLAPSE_KEYS = {"kl_per_dim", "kl_per_dim_sorted", "active_units", "mutual_information", "kl_threshold",
                 "mutual_information_max",
                 "collapsed_dims", "verdict"}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="session")
def debug_run(tmp_path_factory) -> Path:
    """A run dir made by the real `vae-train trainer=debug` (30 steps on fake data)."""
    cwd = tmp_path_factory.mktemp("debug_run")
    done = run_cli("vae-train", "trainer=debug", "hydra.run.dir=run", cwd=cwd)
    assert done.returncode == 0, done.stderr[-2000:]
    return cwd / "run"


def eval_cfg(*overrides: str):
    with initialize_config_module("vae_cli.configs", version_base="1.3"):
        return compose("eval", overrides=list(overrides))


def sample_cfg(*overrides: str):
    with initialize_config_module("vae_cli.configs", version_base="1.3"):
        return compose("sample", overrides=list(overrides))


@pytest.mark.slow
def test_vae_eval_cli_writes_metrics_scores_and_tensorboard(debug_run):
    done = run_cli("vae-eval", f"ckpt={debug_run / 'checkpoints' / 'best.pt'}", "k=16", "k_chunk=5", "score=true",
                   "quality_samples=128", cwd=debug_run.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "IW-NLL (k=16)" in done.stdout and "bits/dim" in done.stdout and "collapse" in done.stdout
    metrics = json.loads((debug_run / "eval-best" / "metrics.json").read_text())
    assert KEYS <= metrics.keys() and COLLAPSE_KEYS <= metrics["collapse"].keys()
    assert metrics["k"] == 16 and metrics["seed"] == 0 and metrics["split"] == "test" and metrics["step"] == 30
    assert metrics["num_examples"] == 128 and metrics["data_noise"] == "dynamic binarization"
    assert metrics["iw_nll"] > 0 and metrics["wall_time_s"]["total_s"] > 0
    assert {"classifier_fd", "label_entropy", "marginal_label_entropy"} <= metrics["sample_quality"].keys()
    rows = list(csv.DictReader(open(debug_run / "eval-best" / "scores-test.csv")))
    assert len(rows) == 128 and list(rows[0]) == ["index", "label", "elbo", "iw_nll", "distortion", "rate"]
    mean_nll = sum(float(r["iw_nll"]) for r in rows) / len(rows)
    assert mean_nll == pytest.approx(metrics["iw_nll"], rel=1e-4)
    acc = EventAccumulator(str(debug_run)).Reload()
    assert {"test/iw_nll", "test/elbo", "test/active_units", "test/iw_nll_bits_per_dim"} <= set(acc.Tags()["scalars"])
    assert acc.Scalars("test/iw_nll")[-1].value == pytest.approx(metrics["iw_nll"], rel=1e-5)
    assert "test/collapse_report/text_summary" in acc.Tags()["tensors"]


def test_vae_eval_cli_without_ckpt_is_one_line_error(tmp_path):
    done = run_cli("vae-eval", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["vae-eval: error: ckpt=... is required, e.g. vae-eval "
                                                "ckpt=outputs/<date>/<time>/checkpoints/best.pt"]


def test_missing_corrupt_and_incompatible_checkpoints(debug_run, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        run_eval(eval_cfg(f"ckpt={tmp_path / 'nope.pt'}"))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="corrupt"):
        run_eval(eval_cfg(f"ckpt={tmp_path / 'bad.pt'}"))
    state = torch.load(debug_run / "checkpoints" / "best.pt", weights_only=True)
    torch.save({**state, "version": "7.0.0"}, tmp_path / "old.pt")
    with pytest.raises(UserError, match="vae-cli 7.0.0, incompatible"):
        run_eval(eval_cfg(f"ckpt={tmp_path / 'old.pt'}"))
    state["model"].pop(next(iter(state["model"])))
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(UserError, match="does not fit the model"):
        run_eval(eval_cfg(f"ckpt={tmp_path / 'other.pt'}"))
    with pytest.raises(UserError, match="split='train'"):
        run_eval(eval_cfg(f"ckpt={debug_run / 'checkpoints' / 'best.pt'}", "split=train"))


def test_eval_in_process_out_dir_and_subset(debug_run, tmp_path):
    """out= puts metrics.json and the TensorBoard events there; num_examples evaluates a prefix of the split."""
    record = run_eval(eval_cfg(f"ckpt={debug_run / 'checkpoints' / 'last.pt'}", f"out={tmp_path}", "k=4",
                               "k_chunk=3", "num_examples=20", "quality=false", "progress=false"))
    assert record["num_examples"] == 20 and record["sample_quality"] is None
    assert json.loads((tmp_path / "metrics.json").read_text())["iw_nll"] == record["iw_nll"]
    assert any(tmp_path.glob("events.out.tfevents.*"))


def test_ckpt_may_be_a_run_dir_or_its_checkpoints_dir_and_a_sweep_dir_names_its_runs(debug_run, tmp_path):
    """`ckpt=<run dir>` (what vae-train prints at the end, what resume= takes) is its best.pt: the same numbers."""
    quick = ["k=3", "num_examples=8", "quality=false", "progress=false"]
    best = run_eval(eval_cfg(f"ckpt={debug_run / 'checkpoints' / 'best.pt'}", f"out={tmp_path / 'best'}", *quick))
    for form in (debug_run, debug_run / "checkpoints"):
        record = run_eval(eval_cfg(f"ckpt={form}", f"out={tmp_path / form.name}", *quick))
        assert record["checkpoint"] == str(debug_run / "checkpoints" / "best.pt")
        assert (record["elbo"], record["iw_nll"]) == (best["elbo"], best["iw_nll"])
    job = tmp_path / "sweep" / "0_beta=4" / "checkpoints"
    job.mkdir(parents=True)
    (job / "last.pt").write_bytes((debug_run / "checkpoints" / "last.pt").read_bytes())
    done = run_cli("vae-prior", f"ckpt={tmp_path / 'sweep'}", "hydra.run.dir=prior-run", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"vae-prior: error: ckpt={tmp_path / 'sweep'} is a sweep dir of 1 runs, not one run: name one, e.g. "
        f"ckpt={job.parent}"], done.stderr
    with pytest.raises(UserError, match="is a directory without checkpoints"):
        run_eval(eval_cfg(f"ckpt={tmp_path / 'best'}"))


def test_out_that_cannot_be_a_directory_is_one_line_before_any_work(debug_run, tmp_path):
    """A file in the way, a path through a file, a place no directory can be made (/proc, even for root)."""
    (tmp_path / "a-file").write_text("keep me")
    outs = {tmp_path / "a-file": "is a file; give a directory for", tmp_path / "a-file" / "sub": "cannot write",
            Path("/proc/vae-cli-test"): "cannot write"}
    for out, says in outs.items():
        for app, compose_cfg in ((run_eval, eval_cfg), (run_sample, sample_cfg)):
            with pytest.raises(UserError, match=says):
                app(compose_cfg(f"ckpt={debug_run}", f"out={out}"))
    done = run_cli("vae-sample", f"ckpt={debug_run}", f"out={tmp_path / 'a-file'}", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"vae-sample: error: out={tmp_path / 'a-file'} is a file; give a directory for the pictures (it is created "
        f"if missing)"], done.stderr
    assert (tmp_path / "a-file").read_text() == "keep me"
