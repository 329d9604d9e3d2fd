"""The model-family contract (models/base.py): declared kinds refuse group options that cannot combine before any
data loads; one prior signature; ancestral sampling for hierarchies; the VQ codebook updated after the lookup."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import make_cfg
from vae_cli.apps.train import run_training
from vae_cli.build import build_model, build_sample_mode, check_kinds
from vae_cli.errors import ConfigError, UserError
from vae_cli.models.base import Family, LatentKind, LatentTerms, Prior
from vae_cli.models.vq import VectorQuantizer

# a dataset that cannot load: the kind check must fire before it is looked for
NO_DATA = ["trainer=debug", "max_steps=1", "dataset=mnist", "data_dir=/nonexistent/vae-cli-data"]
PAIRS = [
    (["prior=uniform_categorical"], "prior=uniform_categorical (categorical latents) does not fit VAE"),
    (["prior=uniform_codes"], "prior=uniform_codes (code grid latents) does not fit VAE"),
    (["posterior=categorical"], "posterior=categorical (categorical latents) does not fit VAE"),
    (["posterior=vq"], "posterior=vq (code grid latents) does not fit VAE"),
    (["objective=gumbel"], "objective=gumbel does not apply to VAE (continuous vector latents)"),
    (["objective=vq"], "objective=vq does not apply to VAE"),
    (["model=hierarchical", "objective=gumbel"], "objective=gumbel does not apply to HierarchicalVAE"),
    (["model=vqvae", "objective=elbo"], "objective=elbo does not apply to VQVAE"),
    (["model=vqvae", "objective=iwae"], "objective=iwae does not apply to VQVAE"),
    (["model=gumbel", "posterior=gaussian"], "posterior=gaussian (continuous vector latents) does not fit Categ"),
    (["model=gumbel", "prior=standard_normal"], "prior=standard_normal (continuous vector latents) does not fit"),
    (["model=vqvae", "prior=standard_normal"], "prior=standard_normal (continuous vector latents) does not fit"),
    (["prior=vamp", "posterior=iaf"], "prior=vamp evaluates q(z|x) at arbitrary z"),
    (["model=cvae", "prior=vamp"], "prior=vamp evaluates q(z|u) at label-free pseudo-inputs"),
    (["model=cvae_conv", "prior=vamp"], "conditional posterior q(z|x, y) (model=cvae_conv) needs a label"),
    (["model=gumbel", "posterior=mixture"], "leave posterior= and prior= out (CategoricalVAE's model preset"),
    (["model=vqvae", "prior=mixture"], "or use a continuous-latent model (model=mlp, conv, ladder, ...)"),
]


@pytest.mark.parametrize("overrides, message", PAIRS, ids=[" ".join(p[0]) for p in PAIRS])
def test_group_pairs_that_cannot_combine_are_refused_before_data_loads(tmp_path, overrides, message):
    choices = {k: v for k, v in (o.split("=") for o in overrides)}
    with pytest.raises(ConfigError) as e:
        run_training(make_cfg(*NO_DATA, *overrides), tmp_path, choices)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_every_preset_passes_its_own_kind_check():
    """Each configs/model preset with the parts it picks: no ConfigError (check_kinds raises one on a mismatch)."""
    presets = sorted(f.stem for f in (Path(__file__).resolve().parents[1] / "configs" / "model").glob("*.yaml"))
    assert {"mlp", "conv", "cvae", "cvae_conv", "hierarchical", "ladder", "gumbel", "vqvae"} <= set(presets)
    for family in presets:
        assert check_kinds(make_cfg(f"model={family}"), {"model": family}) is None, family


@pytest.mark.parametrize("pair, names", [(["prior=uniform_categorical"], ["prior=uniform_categorical", "model=gumbel"]),
                                         (["model=cvae", "prior=vamp"], ["prior=vamp", "model=cvae"])])
@pytest.mark.slow
def test_a_refused_pair_through_the_cli_is_one_line(tmp_path, pair, names):
    r = subprocess.run([str(Path(sys.executable).parent / "vae-train"), *NO_DATA, *pair,
                        f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert all(name in lines[0] for name in names), lines[0]


@pytest.mark.parametrize("override", ["mode=prior mode.num=0", "mode=reconstruct mode.pairs_per_row=0",
                                      "mode=interpolate mode.steps=0", "mode=latent_map mode.grid_size=0",
                                      "mode=prior mode.temperature=1e400", "mode=prior mode.temperature=-1",
                                      "mode=traverse mode.steps=0", "mode=traverse mode.steps=1", "mode=traverse mode.low=3 mode.high=-3",
                                      "mode=arithmetic mode.scales=[]"])
def test_zero_or_absurd_mode_values_are_one_line(override):
    from hydra import compose, initialize_config_module

    with initialize_config_module("vae_cli.configs", version_base="1.3"):
        cfg = compose("sample", overrides=override.split())
    with pytest.raises(UserError) as e:
        build_sample_mode(cfg)
    key = override.split()[1].split("=")[0]
    assert key in str(e.value) and "\n" not in str(e.value)


def test_every_prior_takes_the_one_signature():
    """prior(encode) -> a distribution whose samples the family decodes, for every option of the prior group."""
    for family, prior in [("mlp", "standard_normal"), ("mlp", "mixture"), ("mlp", "vamp"),
                          ("gumbel", "uniform_categorical"), ("vqvae", "uniform_codes")]:
        model = build_model(make_cfg(f"model={family}", f"prior={prior}", "latent_dim=3"), (1, 28, 28))
        assert isinstance(model, Family) and isinstance(model.prior, Prior)
        p = model.prior(model.encode)
        z = p.sample((2,))
        assert model.decode(z).mean.shape == (2, 1, 28, 28)


def hierarchical():
    torch.manual_seed(0)
    cfg = make_cfg("model=hierarchical", "latent_dim=3", "model.lower_dims=[5]", "model.hidden_sizes=[8]",
                   "model.encoder.hidden_sizes=[16]", "model.encoder.block_sizes=[[8]]",
                   "model.decoder.hidden_sizes=[16]")
    return build_model(cfg, (1, 28, 28)).eval()


def test_hierarchical_prior_sampling_is_ancestral():
    """z_L ~ p(z_L), then z_1 ~ p(z_1 | z_L): the decoded mean varies with the lower layer's noise for a fixed
    z_L; ancestral=False (the conditional-mean path) is decode(z_L) and has no noise."""
    model = hierarchical()
    assert model.latent_kind == LatentKind.HIERARCHY and model.layer_dims == [5, 3]
    z = model.sample_latents(4)  # (4, 3): the top layer
    a, b = model.generate(z).mean, model.generate(z).mean
    assert not torch.allclose(a, b)
    assert torch.equal(model.generate(z, ancestral=False).mean, model.decode(z).mean)
    torch.manual_seed(1)
    eps = torch.randn(4, 5)
    p1 = model.p_layers[0](z)
    torch.manual_seed(1)
    assert torch.allclose(model.generate(z).mean, model._likelihood_at(p1.mean + p1.stddev * eps).mean)


def test_latent_terms_carry_z_q_p_and_a_per_layer_view():
    model = hierarchical()
    x = torch.rand(6, 1, 28, 28).bernoulli()
    t = model.latent_terms(x, None, 2)
    assert isinstance(t, LatentTerms) and t.z.shape == (2, 6, 3) and t.q.batch_shape == (6,)
    assert torch.allclose(t.p.log_prob(t.z), model.prior_dist().log_prob(t.z))
    layers = model.split_layers(t.kl_per_dim)
    assert [tuple(v.shape) for v in layers] == [(6, 5), (6, 3)]
    assert torch.allclose(torch.stack([v.sum(-1) for v in layers], -1), t.kl_per_layer)
    assert [m.shape[1] for m in model.layer_means(x)] == [5, 3]


def test_hierarchical_traverse_orders_the_top_layer_by_its_kl():
    from vae_cli.apps.latent_modes import top_layer_order

    model = hierarchical()
    x = torch.rand(8, 1, 28, 28).bernoulli()
    order, score, name = top_layer_order(model, x, None)
    top_kl = model.split_layers(model.latent_terms(x, None, 1).kl_per_dim)[-1]
    assert top_kl.shape == (8, 3)  # the top layer's closed-form KL: the same for every sample
    assert name == "KL" and torch.allclose(score, top_kl.mean(0))
    assert torch.equal(order, torch.argsort(top_kl.mean(0), descending=True))


def test_ema_quantizes_with_the_codebook_it_assigned_with():
    """In training, z_q must be the old codebook's vectors of the assigned codes (update after the lookup)."""
    torch.manual_seed(0)
    vq = VectorQuantizer(in_features=2, num_codes=4, code_dim=2, ema=True, decay=0.5, restart_threshold=0.0)
    vq.proj = torch.nn.Identity()
    vq.initialized.fill_(True)
    old = torch.tensor([[0.0, 0.0], [4.0, 4.0], [-4.0, 4.0], [4.0, -4.0]])
    vq.codebook.copy_(old)
    vq.embed_sum.copy_(old)
    z_e = torch.tensor([1.0, 1.0]).view(1, 2, 1, 1).expand(3, 2, 2, 2).contiguous()
    q = vq.train()(z_e)
    assert torch.equal(q.codes, torch.zeros(3, 2, 2, dtype=torch.long))
    assert torch.allclose(q.z_q, old[0].view(1, 2, 1, 1).expand_as(z_e))  # the code it was assigned, unmoved
    assert not torch.allclose(vq.codebook[0], old[0])  # and the EMA did move it afterwards
