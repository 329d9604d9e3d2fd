"""Each new model family trains a few steps on fake data through the real trainer and logs its pictures;
the VQ-VAE's second stage runs end to end through the real CLI."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vae_cli.apps.train import run_training
from vae_cli.apps.prior import load_code_prior, require_code_grid
from vae_cli.build import load_model_from_checkpoint
from vae_cli.errors import UserError

BIN = Path(sys.executable).parent
FAST = ("trainer=debug", "max_steps=20", "trainer.eval_every=10", "dataset.num_train=256", "trainer.lr=3e-3")


def tb(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def val_losses(acc: EventAccumulator) -> list[float]:
    return [e.value for tag in ("val_at_step_0/loss", "val/loss") for e in acc.Scalars(tag)]  # step 0 apart


@pytest.mark.parametrize("family, tags", [
    ("cvae", {"samples/prior", "samples/per_class", "reconstructions/val"}),
    ("gumbel", {"samples/prior", "reconstructions/val"}),
    ("vqvae", {"samples/prior", "reconstructions/val"}),
])
@pytest.mark.slow
def test_family_trains_and_logs(cfg_factory, tmp_path, family, tags):
    val = run_training(cfg_factory(f"model={family}", *FAST), tmp_path)
    acc = tb(tmp_path)
    losses = val_losses(acc)
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert tags <= set(acc.Tags()["images"])
    scalars = set(acc.Tags()["scalars"])
    if family == "vqvae":
        assert {"val/perplexity", "val/codes_used", "val/commitment", "val/codebook_loss"} <= scalars
        assert "elbo" not in val and 1 <= val["codes_used"] <= 128
    else:
        assert {"val/elbo", "val/rate"} <= scalars
    if family == "gumbel":
        assert "train/temperature" in scalars
    if family == "cvae":
        with pytest.raises(UserError, match="VQ-VAE checkpoint"):
            load_model_from_checkpoint(tmp_path / "checkpoints" / "last.pt", torch.device("cpu"), check=require_code_grid)


@pytest.mark.parametrize("variant", ["model=gumbel model.hard=true", "model=vqvae posterior.ema=true"])
def test_variants_take_a_step(cfg_factory, tmp_path, variant):
    val = run_training(cfg_factory(*variant.split(), *FAST[:1], "max_steps=2", "dataset.num_train=64"), tmp_path)
    assert torch.isfinite(torch.tensor(val["loss"]))


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_vqvae_then_prior_stage_through_the_cli(tmp_path):
    r = run("vae-train", "model=vqvae", "trainer=debug", "max_steps=4", "trainer.eval_every=4",
            "posterior.num_codes=16", f"hydra.run.dir={tmp_path / 'vq'}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ckpt = tmp_path / "vq" / "checkpoints" / "last.pt"
    r = run("vae-sample", f"ckpt={ckpt}", "mode=prior", f"out={tmp_path / 's0'}", cwd=tmp_path)
    assert r.returncode == 2 and "run `vae-prior" in r.stderr and "Traceback" not in r.stderr
    r = run("vae-prior", f"ckpt={ckpt}", "max_steps=6", "eval_every=3", "num_images=4", "network.channels=8",
            "network.num_layers=1", f"hydra.run.dir={tmp_path / 'prior'}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "bits/code" in r.stderr + r.stdout
    vq = load_model_from_checkpoint(ckpt, torch.device("cpu"))[0]
    net = load_code_prior(ckpt, torch.device("cpu"), vq)
    assert net.num_codes == 16 and (tmp_path / "prior" / "samples_code_prior.png").is_file()
    acc = tb(tmp_path / "prior")
    assert [e.step for e in acc.Scalars("prior/val_bits_per_code")] == [3, 6]
    assert "samples/code_prior" in acc.Tags()["images"]
    r = run("vae-sample", f"ckpt={ckpt}", "mode=prior", "mode.num=4", "mode.nrow=2", f"out={tmp_path / 's1'}",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "s1" / "prior_num-4_nrow-2.png").size == (3 * (2 * 30 + 2), 3 * (2 * 30 + 2))
    # another checkpoint in the same dir (last.pt's weights, perturbed) must not use last.pt's prior:
    # vae-sample refuses in one line, vae-eval reports the code metrics without bits/code
    other = tmp_path / "vq" / "checkpoints" / "step_000000002.pt"
    torch.save({**torch.load(ckpt, weights_only=True), "model": {k: v + 1e-3 if v.is_floating_point() else v
                for k, v in torch.load(ckpt, weights_only=True)["model"].items()}}, other)
    r = run("vae-sample", f"ckpt={other}", "mode=prior", f"out={tmp_path / 's2'}", cwd=tmp_path)
    assert r.returncode == 2 and "was fitted on other VQ-VAE weights" in r.stderr and "Traceback" not in r.stderr
    r = run("vae-eval", f"ckpt={other}", "quality=false", f"out={tmp_path / 'e2'}", cwd=tmp_path)
    assert r.returncode == 0 and "no bits/code: the code prior" in r.stdout + r.stderr, r.stderr


def test_prior_stage_errors(tmp_path):
    from hydra import compose, initialize_config_module

    from vae_cli.apps.prior import fit_code_prior
    from vae_cli.errors import ConfigError

    with initialize_config_module("vae_cli.configs", version_base="1.3"):
        cfg = compose("code_prior")
    with pytest.raises(ConfigError, match="set ckpt="):
        fit_code_prior(cfg, tmp_path)
    cfg.ckpt = str(tmp_path / "nope.pt")
    with pytest.raises(UserError, match="does not exist"):
        fit_code_prior(cfg, tmp_path)
