"""The real CLI in a subprocess: debug run, multirun, a short real-MNIST run, TensorBoard read back."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

SCALAR_TAGS = {f"{split}/{name}" for split in ("train", "val")
               for name in ("loss", "elbo", "distortion", "rate", "bits_per_dim", "beta")}
SCALAR_TAGS |= {"val/active_units", "train/lr", "train/examples_per_sec"}
IMAGE_TAGS = {"samples/prior", "reconstructions/val"}


def vae_train(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("vae-train")
    proc = subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, env=os.environ.copy(),
                          timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"vae-train {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("train.log"))


def events(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def hparams(run_dir: Path) -> dict:
    """The HParams tab's view of a run: the session's hyperparameters as {name: value}."""
    (path,) = run_dir.glob("events.out.tfevents.*")
    for event in EventFileLoader(str(path)).Load():
        for value in event.summary.value:
            if value.tag == "_hparams_/session_start_info":
                info = HParamsPluginData.FromString(value.metadata.plugin_data.content).session_start_info
                return {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}
    return {}


def test_debug_run_logs_every_tag(tmp_path):
    proc = vae_train("trainer=debug", cwd=tmp_path)
    (run,) = run_dirs(tmp_path / "outputs")
    assert "done: 30 steps in " in proc.stdout + proc.stderr
    assert {"last.pt", "best.pt"} <= {p.name for p in (run / "checkpoints").iterdir()}
    acc = events(run)
    tags = acc.Tags()
    assert SCALAR_TAGS <= set(tags["scalars"]), SCALAR_TAGS - set(tags["scalars"])
    kl_tags = [t for t in tags["scalars"] if t.startswith("kl_per_dim/")]
    assert len(kl_tags) == 32  # latent_dim
    assert "kl_per_dim/all" in tags["histograms"]
    assert IMAGE_TAGS <= set(tags["images"])
    assert [e.step for e in acc.Scalars("val/elbo")] == [15, 30]  # step 0 is apart: it would squash the axis
    assert [e.step for e in acc.Scalars("val_at_step_0/elbo")] == [0]
    assert "config/text_summary" in tags["tensors"]
    assert (run / ".hydra" / "config.yaml").is_file()
    hp = hparams(run)
    assert hp["beta"] == 1.0 and hp["latent_dim"] == 32 and hp["model"] == "mlp" and hp["dataset"] == "fake"


def test_multirun_leaves_one_complete_run_dir_per_job(tmp_path):
    vae_train("-m", "beta=1,4", "trainer=debug", "max_steps=4", "trainer.eval_every=4", cwd=tmp_path)
    runs = run_dirs(tmp_path / "outputs" / "multirun")  # beside single runs: one `tensorboard --logdir outputs`
    assert [r.name for r in runs] == ["0_beta-1_trainer-debug", "1_beta-4_trainer-debug"]  # run length: not named
    for run, beta in zip(runs, (1.0, 4.0)):
        assert (run / "checkpoints" / "last.pt").is_file()
        assert events(run).Scalars("val/beta")[-1].value == beta
        assert hparams(run)["beta"] == beta


@pytest.mark.slow
def test_bad_input_is_one_clear_line_and_a_nonzero_exit(tmp_path):
    proc = vae_train("trainer=debug", "latent_dim=0", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "latent_dim=0" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
    proc = vae_train("trainer=debug", "model=conv", "model.encoder.channels=[8,8,8]", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "divisible by 8" in proc.stderr and "Traceback" not in proc.stderr
    proc = vae_train("modle=conv", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "did you mean 'model'" in proc.stderr and "Traceback" not in proc.stderr


def test_help_lists_every_group():
    """Each group, then each of its options (the config files on disk) indented under it."""
    exe = Path(sys.executable).with_name("vae-train")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    configs = Path(__file__).resolve().parents[1] / "configs"
    listed = {}
    for line in out.splitlines():
        if line.startswith("  ") and not line.startswith("      ") and line.split()[0] in os.listdir(configs):
            group = line.split()[0]
            listed[group] = []
        elif line.startswith("      ") and listed:
            listed[group].append(line.split()[0].rstrip("*"))
    groups = {p.name for p in configs.iterdir() if p.is_dir() and p.name not in ("hydra", "__pycache__")}
    assert set(listed) == groups
    for group, options in listed.items():
        assert options == sorted(f.stem for f in (configs / group).glob("*.yaml")), group


def test_module_entry_point_works(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vae_cli", "trainer=debug", "max_steps=2", "trainer.eval_every=2"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(run_dirs(tmp_path / "outputs")) == 1


@pytest.mark.slow
def test_short_real_mnist_run_improves_validation_elbo(tmp_path):
    """A few hundred steps from the bundled MNIST: the validation ELBO is far above its step-0 value."""
    vae_train("max_steps=300", "trainer.eval_every=300", "trainer.log_every=100", cwd=tmp_path)
    (run,) = run_dirs(tmp_path / "outputs")
    val = events(run).Scalars("val_at_step_0/elbo") + events(run).Scalars("val/elbo")
    assert [e.step for e in val] == [0, 300]
    assert val[-1].value > val[0].value + 200  # about -545 -> about -160 nats
    assert 0 < events(run).Scalars("val/active_units")[-1].value <= 32
