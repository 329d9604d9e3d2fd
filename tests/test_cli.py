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
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def hparams(run_dir: Path) -> dict:
    """The HParams tab's view of a run: the session's hyperparameters as {name: value}."""
    (path,) = (run_dir / "tb").glob("events.out.tfevents.*")
    for event in EventFileLoader(str(path)).Load():
        for value in event.summary.value:
            if value.tag == "_hparams_/session_start_info":
                info = HParamsPluginData.FromString(value.metadata.plugin_data.content).session_start_info
                return {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}
    return {}


def test_debug_run_logs_every_tag(tmp_path):
    proc = vae_train("trainer=debug", cwd=tmp_path)
    (run,) = run_dirs(tmp_path / "outputs")
    assert "done: val elbo" in proc.stdout + proc.stderr
    assert {"last.pt", "best.pt"} <= {p.name for p in (run / "checkpoints").iterdir()}
    acc = events(run)
    tags = acc.Tags()
    assert SCALAR_TAGS <= set(tags["scalars"]), SCALAR_TAGS - set(tags["scalars"])
    kl_tags = [t for t in tags["scalars"] if t.startswith("kl_per_dim/")]
    assert len(kl_tags) == 32  # latent_dim
    assert "kl_per_dim/all" in tags["histograms"]
    assert IMAGE_TAGS <= set(tags["images"])
    assert [e.step for e in acc.Scalars("val/elbo")] == [0, 15, 30]
    assert "config/text_summary" in tags["tensors"]
    assert (run / ".hydra" / "config.yaml").is_file()
    hp = hparams(run)
    assert hp["beta"] == 1.0 and hp["latent_dim"] == 32 and hp["model"] == "mlp" and hp["dataset"] == "fake"


def test_multirun_leaves_one_complete_run_dir_per_job(tmp_path):
    vae_train("-m", "beta=1,4", "trainer=debug", "max_steps=4", "trainer.eval_every=4", cwd=tmp_path)
    runs = run_dirs(tmp_path / "multirun")
    assert [r.name for r in runs] == ["0_beta=1,max_steps=4,trainer.eval_every=4,trainer=debug",
                                      "1_beta=4,max_steps=4,trainer.eval_every=4,trainer=debug"]
    for run, beta in zip(runs, (1.0, 4.0)):
        assert (run / "checkpoints" / "last.pt").is_file()
        assert events(run).Scalars("val/beta")[-1].value == beta
        assert hparams(run)["beta"] == beta


def test_bad_input_is_one_clear_line_and_a_nonzero_exit(tmp_path):
    proc = vae_train("trainer=debug", "latent_dim=0", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "latent_dim=0" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
    proc = vae_train("trainer=debug", "model=conv", "model.encoder.channels=[8,8,8]", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "divisible by 8" in proc.stderr and "Traceback" not in proc.stderr
    proc = vae_train("modle=conv", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "modle" in proc.stderr and "Traceback" not in proc.stderr


def test_help_lists_every_group():
    exe = Path(sys.executable).with_name("vae-train")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    for line in ("dataset: cifar10, fake, fashion_mnist, mnist", "likelihood: bernoulli, gaussian",
                 "objective: beta_vae, elbo, free_bits, gumbel, iwae, kl_annealing, multi_sample_elbo, vq",
                 "model: conv, cvae, cvae_conv, gumbel, hierarchical, ladder, mlp, vqvae",
                 "posterior: categorical, gaussian, iaf, mixture, planar, vq",
                 "prior: mixture, standard_normal, uniform_categorical, uniform_codes, vamp",
                 "experiment: iwae_paper_1layer, iwae_paper_2layer, ladder_1layer, ladder_2layer, vae_paper_1layer, vae_paper_2layer, vamp_1layer"):
        assert line in out


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
    val = events(run).Scalars("val/elbo")
    assert [e.step for e in val] == [0, 300]
    assert val[-1].value > val[0].value + 200  # about -545 -> about -160 nats
    assert 0 < events(run).Scalars("val/active_units")[-1].value <= 32
