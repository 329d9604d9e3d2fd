"""Start-up: `--help` and a refused start load none of the heavy libraries a training run needs later.

Structural, not timed: the real console entry points in a subprocess, then `sys.modules` read at exit."""
import json
import subprocess
import sys

import pytest
from clitools import env

HEAVY = ("tensorboard", "torch.utils.tensorboard", "matplotlib", "torchvision")
PROBE = """
import json, sys
from vae_cli import cli
tool, out, *args = sys.argv[1:]
sys.argv = [tool, *args]
try:
    getattr(cli, {"vae-train": "train_main", "vae-eval": "eval_main"}[tool])()
except SystemExit as e:
    code = e.code or 0
else:
    code = 0
json.dump({"code": code, "modules": sorted(sys.modules)}, open(out, "w"))
"""


def probe(tmp_path, tool: str, *args: str) -> tuple[int, set[str], str]:
    """Run `tool args` through its entry point in a fresh interpreter -> (exit code, modules loaded, stderr)."""
    out = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", PROBE, tool, str(out), *args], capture_output=True, text=True,
                          env=env(), cwd=tmp_path, timeout=120)
    got = json.loads(out.read_text())
    return got["code"], set(got["modules"]), done.stderr


@pytest.mark.parametrize("tool", ["vae-train", "vae-eval"])
def test_help_loads_neither_torch_nor_the_heavy_libraries(tmp_path, tool):
    code, modules, _ = probe(tmp_path, tool, "--help")
    assert code == 0
    assert not modules & {*HEAVY, "torch"}, sorted(modules & {*HEAVY, "torch"})


def test_a_misspelled_key_is_refused_before_torch_loads(tmp_path):
    code, modules, err = probe(tmp_path, "vae-train", "latnt_dim=3")
    assert code == 2 and "latent_dim" in err and len(err.strip().splitlines()) == 1
    assert not modules & {*HEAVY, "torch"}, sorted(modules & {*HEAVY, "torch"})


@pytest.mark.parametrize("bad", ["latent_dim=0", "trainer.precision=fp8", "trainer.batch_size=0"])
def test_a_bad_value_is_refused_without_the_heavy_libraries(tmp_path, bad):
    code, modules, err = probe(tmp_path, "vae-train", bad, f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 2 and bad.split("=")[0] in err and len(err.strip().splitlines()) == 1, err
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


GC_PROBE = """
import gc, json, sys
from vae_cli import cli
from vae_cli.training import trainer
out, *args = sys.argv[1:]
seen = []
step = trainer.Trainer._train_step
def recorded(self):
    seen.append({"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()})
    step(self)
trainer.Trainer._train_step = recorded
cli.exit_now = lambda code: (json.dump(seen, open(out, "w")), sys.exit(code))
sys.argv = ["vae-train", *args]
cli.train_main()
"""


def test_the_garbage_collector_is_paused_during_the_start_and_runs_during_training(tmp_path):
    """Paused while the tool starts (gc_pause.py); on again at the first step, with the start's objects frozen."""
    from clitools import TINY

    out = tmp_path / "gc.json"
    done = subprocess.run([sys.executable, "-c", GC_PROBE, str(out), *TINY, "max_steps=2",
                           f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, env=env(),
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    steps = json.loads(out.read_text())
    assert len(steps) == 2 and all(s["enabled"] for s in steps), steps
    assert steps[0]["frozen"] > 100_000, steps  # torch's and Hydra's objects, moved out of every collection
