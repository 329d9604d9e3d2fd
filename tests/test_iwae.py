"""IWAE bound against the ELBO, and the hierarchical model's per-layer terms."""
import math

import torch

from conftest import make_cfg
from vae_cli.build import build_model, build_objective
from vae_cli.objectives.elbo import ELBO, log_weights
from vae_cli.objectives.iwae import IWAE


def tiny_model(*overrides):
    torch.manual_seed(0)
    cfg = make_cfg("dataset=fake", "latent_dim=4", "model.encoder.hidden_sizes=[32]",
                   "model.decoder.hidden_sizes=[32]", *overrides)
    return build_model(cfg, (1, 28, 28))


def batch(n=16):
    torch.manual_seed(1)
    return torch.bernoulli(torch.full((n, 1, 28, 28), 0.3))


def test_iwae_with_one_sample_is_the_elbo_under_the_same_noise():
    """posterior=mixture has no closed-form KL, so the ELBO is log p(x,z) - log q(z|x) at the same draw."""
    model, x = tiny_model("posterior=mixture"), batch()
    torch.manual_seed(5)
    elbo = ELBO()(model, x, step=0)["elbo"]
    torch.manual_seed(5)
    iwae = IWAE(num_samples=1)(model, x, step=0)
    assert torch.allclose(iwae["iwae_bound"], elbo, atol=1e-4)
    assert torch.allclose(iwae["loss"], -elbo, atol=1e-4)
    assert torch.allclose(iwae["ess"], torch.ones_like(elbo))


def test_iwae_bound_exceeds_the_elbo_on_average_and_tightens_with_k():
    model, x = tiny_model(), batch(64)
    torch.manual_seed(2)
    with torch.no_grad():
        elbo = ELBO()(model, x, step=0)["elbo"].mean()  # closed-form KL, independent noise
        bounds = [IWAE(num_samples=k)(model, x, step=0)["iwae_bound"].mean() for k in (1, 10, 100)]
    assert bounds[0] < bounds[1] < bounds[2]
    assert elbo < bounds[1]


def test_iwae_terms_are_the_logsumexp_of_the_weights():
    model, x = tiny_model("posterior=iaf"), batch(8)
    torch.manual_seed(3)
    out = IWAE(num_samples=7)(model, x, step=0)
    torch.manual_seed(3)
    log_w = log_weights(model.latent_terms(x, None, 7))  # (7, B)
    w = (log_w - log_w.max(0).values).exp()
    assert torch.allclose(out["iwae_bound"], torch.logsumexp(log_w, 0) - math.log(7), atol=1e-4)
    assert torch.allclose(out["ess"], w.sum(0) ** 2 / (w**2).sum(0), atol=1e-4)
    assert ((out["ess"] >= 1) & (out["ess"] <= 7)).all()
    assert torch.allclose(out["elbo"], log_w.mean(0), atol=1e-3)  # a flow: the ELBO is the mean log weight


def test_iwae_objective_composes_from_config_with_num_samples():
    cfg = make_cfg("objective=iwae", "objective.num_samples=3", "beta=0.5")
    objective = build_objective(cfg)
    assert isinstance(objective, IWAE) and objective.num_samples == 3 and objective.weight(0) == 0.5


def test_hierarchical_terms_sum_over_layers():
    model, x = tiny_model("model=hierarchical", "model.lower_dims=[6]", "model.hidden_sizes=[16]",
                          "model.encoder.hidden_sizes=[32]", "model.encoder.block_sizes=[[16]]",
                          "model.decoder.hidden_sizes=[32]"), batch(8)
    torch.manual_seed(4)
    t = model.latent_terms(x, None, 3)
    assert t.log_px.shape == t.log_pz.shape == t.log_qz.shape == (3, 8)
    assert t.kl_per_layer.shape == (8, 2) and t.kl_per_dim.shape == (8, 6 + 4)
    assert torch.allclose(t.kl_per_dim[:, :6].sum(-1), t.kl_per_layer[:, 0], atol=1e-5)
    assert torch.allclose(t.kl_per_dim[:, 6:].sum(-1), t.kl_per_layer[:, 1], atol=1e-5)
    assert (t.kl_per_layer >= 0).all()
    # log q - log p, averaged over many samples, matches the analytic per-layer KLs' total
    torch.manual_seed(4)
    many = model.latent_terms(x, None, 4000)
    assert torch.allclose((many.log_qz - many.log_pz).mean(0), many.kl_per_layer.sum(-1), rtol=0.05, atol=0.2)
    out = IWAE(num_samples=3)(model, x, step=0)
    assert out["kl_per_layer"].shape == (2,)
