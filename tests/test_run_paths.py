"""Every path the tools print pastes back into ckpt= / resume= as it is, inside and outside -m; run-dir names."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from clitools import TINY, env, load
from conftest import make_cfg
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from vae_cli.build import resumable_keys
from vae_cli.command_line import quote_paths
from vae_cli.run_paths import run_suffix
from vae_cli.training.resume import RUN_KEYS

REPO = Path(__file__).resolve().parents[1]
QUICK_EVAL = ["k=2", "num_examples=8", "quality=false", "progress=false"]


def tool(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name(name)
    done = subprocess.run([str(exe), *args], cwd=cwd, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{name} {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def printed(done: subprocess.CompletedProcess, what: str) -> list[str]:
    """The paths a run prints: what = 'run dir' (at its start) or 'best checkpoint' (at its end)."""
    return re.findall(rf"{what}: (\S+)$", done.stdout + done.stderr, flags=re.M)


def parses_as(arg: str) -> object:
    (override,) = OverridesParser.create().parse_overrides([arg])
    return override.value()


@pytest.mark.parametrize("dirname, suffix", [
    ("beta-4_model-conv", "_beta-4_model-conv"),
    ("dataset.image_shape-[1,8,8]_latent_dim-4", "_dataset.image_shape-1-8-8_latent_dim-4"),
    ("data_dir-/a/b c_+x-{y: 1}", "_data_dir--a-b-c_+x-y--1"),
    ("", ""),
])
def test_a_run_dir_name_is_one_plain_value_for_the_override_grammar(dirname, suffix):
    assert run_suffix(dirname) == suffix
    path = f"outputs/2026-12-06/17-20-01{suffix}/checkpoints/best.pt"
    assert parses_as(f"ckpt={path}") == path


def test_dir_names_leave_out_every_key_a_resumed_run_may_change():
    train = OmegaConf.load(REPO / "configs" / "train.yaml")
    excluded = set(train.hydra.job.config.override_dirname.exclude_keys)
    may_change = set(RUN_KEYS)
    for dataset in ("mnist", "folder", "celeba"):  # each dataset's own resumable keys (dataset.path, ...)
        may_change |= set(resumable_keys(make_cfg(f"dataset={dataset}")))
    assert excluded == may_change - {"trainer.max_steps"}  # trainer.max_steps follows max_steps


def test_an_existing_path_with_equals_or_commas_is_quoted_and_anything_else_left_alone(tmp_path):
    old = tmp_path / "05-00-30_beta=4,latent_dim=2"
    old.mkdir()
    argv = ["vae-eval", f"ckpt={old}", f"out={tmp_path / 'new=dir'}", "ckpt=a,b", f"k={old}", "resume=true"]
    quoted = quote_paths(argv)
    assert quoted[1:] == [f"ckpt='{old}'", *argv[2:]]
    assert parses_as(quoted[1]) == str(old)


@pytest.mark.slow
def test_a_sweeps_printed_paths_paste_back_and_a_longer_rerun_stays_in_its_job_dirs(tmp_path):
    sweep = ["-m", *TINY, "max_steps=4", "trainer.eval_every=4", "beta=1,2"]
    first = tool("vae-train", *sweep, cwd=tmp_path)
    run_dirs, bests = printed(first, "run dir"), printed(first, "best checkpoint")
    assert len(run_dirs) == 2 and len(bests) == 2
    assert not re.search(r"[=,]", "".join(run_dirs))
    tool("vae-eval", f"ckpt={bests[0]}", *QUICK_EVAL, cwd=tmp_path)
    tool("vae-eval", "-m", f"ckpt={run_dirs[1]}", *QUICK_EVAL, cwd=tmp_path)
    sweep_dir = Path(run_dirs[0]).parent
    again = tool("vae-train", *sweep, "max_steps=6", "resume=true", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert sorted(printed(again, "run dir")) == sorted(run_dirs)  # no new job dirs for the longer run
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == sorted(Path(d).name for d in run_dirs)
    assert all(load(Path(d) / "checkpoints" / "last.pt")["step"] == 6 for d in run_dirs)
    tool("vae-train", f"resume={run_dirs[0]}", "max_steps=8", cwd=tmp_path)
    assert load(Path(run_dirs[0]) / "checkpoints" / "last.pt")["step"] == 8


@pytest.mark.slow
def test_a_run_dir_named_with_equals_and_commas_pastes_back_as_it_is(tmp_path):
    """Run dirs of older versions were named `<time>_beta=4,latent_dim=4`."""
    first = tool("vae-train", *TINY, "max_steps=4", "trainer.eval_every=4", "hydra.run.dir=plain", cwd=tmp_path)
    old = tmp_path / "05-00-30_beta=4,latent_dim=4"
    os.rename(printed(first, "run dir")[0], old)
    tool("vae-eval", f"ckpt={old}/checkpoints/best.pt", *QUICK_EVAL, cwd=tmp_path)
    tool("vae-eval", "-m", f"ckpt={old}", *QUICK_EVAL, cwd=tmp_path)
    tool("vae-sample", f"ckpt={old}", cwd=tmp_path)
    tool("vae-train", f"resume={old}", "max_steps=6", cwd=tmp_path)
    assert load(old / "checkpoints" / "last.pt")["step"] == 6
