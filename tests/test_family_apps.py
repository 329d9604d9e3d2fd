"""Every model family through every app: vae-eval, each vae-sample mode, vae-prior. Each pair either writes its
output or is refused in one line (exit 2, no traceback), decided from the declared latent kinds.

One tiny fake-data model per family, trained once for the module; most pairs run in-process, a representative
subset through the real CLI in a subprocess."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from PIL import Image

from conftest import make_cfg
from vae_cli.apps.evaluate import run_eval
from vae_cli.apps.prior import fit_code_prior
from vae_cli.apps.sample import run_sample
from vae_cli.apps.train import run_training
from vae_cli import configs
from vae_cli.build import target
from vae_cli.errors import UserError
from vae_cli.models.base import LatentKind

BIN = Path(sys.executable).parent
TINY = ["trainer=debug", "max_steps=4", "trainer.eval_every=4", "trainer.log_every=2", "dataset.num_train=96",
        "dataset.num_val=64", "dataset.num_test=64", "trainer.num_images=4", "device=cpu", "latent_dim=4"]
MLP = ["model.encoder.hidden_sizes=[32]", "model.decoder.hidden_sizes=[32]"]
SMALL = {  # tiny sizes per preset; a new preset in configs/model/ joins the matrix at its default sizes
    "mlp": MLP,
    "conv": ["model=conv", "model.encoder.channels=[4,8]", "model.encoder.hidden=16", "model.decoder.channels=[8,4]",
             "model.decoder.hidden=16"],
    "cvae": ["model=cvae", *MLP],
    "cvae_conv": ["model=cvae_conv", "model.encoder.channels=[4,8]", "model.encoder.hidden=16",
                  "model.decoder.channels=[8,4]", "model.decoder.hidden=16"],
    "hierarchical": ["model=hierarchical", "model.lower_dims=[6]", "model.hidden_sizes=[16]",
                     "model.encoder.hidden_sizes=[32]", "model.encoder.block_sizes=[[16]]",
                     "model.decoder.hidden_sizes=[32]"],
    "gumbel": ["model=gumbel", "posterior.num_latents=4", "posterior.num_classes=3", *MLP],
    "vqvae": ["model=vqvae", "posterior.num_codes=8", "posterior.code_dim=4", "model.encoder.channels=[4,8]",
              "model.decoder.channels=[8,4]"],
}
FAMILIES = {p.stem: SMALL.get(p.stem, [f"model={p.stem}"]) for p in sorted((Path(configs.__path__[0]) / "model")
                                                                              .glob("*.yaml"))}
MODES = {  # small knobs so the matrix stays fast; the defaults of each mode are tested in test_sample.py
    "prior": ["mode.num=4", "mode.nrow=2"],
    "reconstruct": ["mode.num=4", "mode.pairs_per_row=2"],
    "interpolate": ["mode.pairs=2", "mode.steps=3"],
    "traverse": ["mode.dims=2", "mode.steps=3"],
    "arithmetic": ["mode.num=2", "mode.scales=[0,1]"],
    "latent_map": ["mode.grid_size=3"],
}


def refusal(kind: LatentKind, app: str) -> str | None:
    """What the one line must say for a (latent kind, app) pair that cannot work; None: it writes its output."""
    if kind == LatentKind.CODE_GRID and app == "traverse":
        return "mode=traverse does not apply to VQVAE (code grid latents); a code grid has no ordered dims"
    if kind != LatentKind.CODE_GRID and app == "vae-prior":
        return "vae-prior does not apply to"
    return None


APPS = ["vae-eval", *MODES, "vae-prior"]


def prior_cfg(ckpt: Path, *overrides: str):
    with initialize_config_module("vae_cli.configs", version_base="1.3"):
        return compose("code_prior", overrides=[f"ckpt={ckpt}", "max_steps=2", "eval_every=2", "num_images=2",
                                                "network.channels=4", "network.num_layers=1", "device=cpu",
                                                *overrides])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """family -> its last.pt; code-grid families also get their code prior (prior.pt) so every mode can run."""
    out, kinds = {}, {}
    for family, overrides in FAMILIES.items():
        run, cfg = tmp_path_factory.mktemp(family), make_cfg(*TINY, *overrides)
        kinds[family] = target(cfg.model).latent_kind
        run_training(cfg, run)
        out[family] = run / "checkpoints" / "last.pt"
        if kinds[family] == LatentKind.CODE_GRID:
            fit_code_prior(prior_cfg(out[family]), tmp_path_factory.mktemp(f"{family}_prior"))
    out["kinds"] = kinds
    return out


def run_app(app: str, ckpt: Path, out: Path):
    if app == "vae-prior":
        return fit_code_prior(prior_cfg(ckpt), out)
    with initialize_config_module("vae_cli.configs", version_base="1.3"):
        if app == "vae-eval":
            return run_eval(compose("eval", overrides=[f"ckpt={ckpt}", f"out={out}", "k=4", "k_chunk=2",
                                                       "quality=false", "progress=false", "device=cpu"]))
        return run_sample(compose("sample", overrides=[f"ckpt={ckpt}", f"out={out}", f"mode={app}", *MODES[app],
                                                       "device=cpu"]))


@pytest.mark.slow
@pytest.mark.parametrize("app", APPS)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_through_every_app(runs, tmp_path, family, app):
    kind = runs["kinds"][family]
    if refusal(kind, app) is not None:
        with pytest.raises(UserError) as e:
            run_app(app, runs[family], tmp_path)
        assert "\n" not in str(e.value) and refusal(kind, app) in str(e.value)
        return
    result = run_app(app, runs[family], tmp_path)
    if app == "vae-eval":
        record = json.loads((tmp_path / "metrics.json").read_text())
        assert record["family"] and record["distortion"] > 0
        assert ("elbo" in record) != (kind == LatentKind.CODE_GRID)
    elif app == "vae-prior":
        assert result["val_bits_per_code"] > 0
    else:
        assert result and all(Image.open(p).size[0] > 28 for p in result.values())


def test_vqvae_eval_reports_codes_and_the_code_prior(runs, tmp_path):
    record = run_app("vae-eval", runs["vqvae"], tmp_path)
    assert 1 <= record["codes_used"] <= 8 and 1 <= record["perplexity"] <= record["codes_used"] + 1e-6
    assert 0 < record["bits_per_code"] and record["uniform_bits_per_code"] == pytest.approx(3.0)
    assert record["nll_bound"] > record["distortion"]  # + the code prior's nats


def test_vae_prior_with_data_dir_on_a_fake_data_run(runs, tmp_path):
    """data_dir= only re-roots datasets that have a root (the fake one has none)."""
    assert fit_code_prior(prior_cfg(runs["vqvae"], f"data_dir={tmp_path}"), tmp_path)["val_bits_per_code"] > 0


def test_hierarchical_eval_has_a_per_layer_view(runs, tmp_path):
    layers = run_app("vae-eval", runs["hierarchical"], tmp_path)["collapse"]["per_layer"]
    assert [layer["dims"] for layer in layers] == [6, 4]
    assert all(len(layer["kl_per_dim"]) == layer["dims"] and 0 <= layer["active_units"] <= layer["dims"]
               for layer in layers)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    import os

    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def one_line(r: subprocess.CompletedProcess, tool: str) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"{tool}: error: ")
    return lines[0]


@pytest.mark.slow
def test_through_the_real_cli(runs, tmp_path):
    """A representative subset in subprocesses: outputs written, refusals one line with exit 2."""
    vq, mlp = runs["vqvae"], runs["mlp"]
    r = cli("vae-eval", f"ckpt={vq}", f"out={tmp_path / 'e'}", "device=cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "bits/code" in r.stdout and json.loads((tmp_path / "e" / "metrics.json").read_text())["codes_used"] >= 1
    assert "mode=interpolate" in one_line(cli("vae-sample", f"ckpt={vq}", "mode=traverse", cwd=tmp_path), "vae-sample")
    assert "VQ-VAE checkpoint" in one_line(cli("vae-prior", f"ckpt={mlp}", cwd=tmp_path), "vae-prior")
    line = one_line(cli("vae-eval", f"ckpt={vq.parent / 'prior.pt'}", cwd=tmp_path), "vae-eval")
    assert "code prior" in line and "best.pt" in line
    assert "mode.grid_size=0" in one_line(cli("vae-sample", f"ckpt={mlp}", "mode=latent_map", "mode.grid_size=0",
                                              cwd=tmp_path), "vae-sample")
