"""Gumbel-softmax categorical VAE: KL against brute force, straight-through, temperature schedule."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from vae_cli.build import build_data, build_model, build_objective
from vae_cli.models.categorical import CategoricalHead, UniformCategorical, categorical_kl, gumbel_softmax_sample
from vae_cli.schedules import ExponentialDecay


def test_kl_to_uniform_matches_brute_force_sum():
    """sum_n KL_n (closed form, per latent) == sum over all C^N joint one-hot configurations."""
    torch.manual_seed(0)
    n, c = 3, 4
    head, prior = CategoricalHead(5, n, c), UniformCategorical(n, c)
    q, p = head(torch.randn(2, 5)), prior()
    kl = categorical_kl(q.base_dist, p.base_dist)  # (B, N), what the family uses
    assert kl.shape == (2, n)
    brute = torch.zeros(2)
    for combo in itertools.product(range(c), repeat=n):
        z = F.one_hot(torch.tensor(combo), c).float()  # (N, C)
        log_q = q.log_prob(z.expand(2, n, c))
        brute += log_q.exp() * (log_q - n * math.log(1.0 / c))
    assert torch.allclose(kl.sum(-1), brute, atol=1e-5)
    assert torch.allclose(p.log_prob(z), torch.tensor(n * math.log(1.0 / c)))


def test_categorical_kl_edge_cases_match_torch_rule():
    """Zero-mass classes: 0 log 0 = 0 where q has none, inf where only p has none; torch's rule agrees."""
    OneHot = torch.distributions.OneHotCategorical
    q = OneHot(probs=torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]))
    p = OneHot(probs=torch.tensor([[0.25, 0.25, 0.5], [0.0, 0.5, 0.5]]))
    kl = categorical_kl(q, p)
    assert kl[0].item() == pytest.approx(math.log(2.0))  # 2 * 0.5 * log(0.5 / 0.25)
    assert kl[1].item() == math.inf
    assert torch.equal(kl, torch.distributions.kl_divergence(q, p))


def test_straight_through_is_one_hot_with_gradient():
    torch.manual_seed(0)
    logits = torch.randn(4, 3, 5, requires_grad=True)
    z = gumbel_softmax_sample(logits, 0.5, 2, hard=True)  # (S, B, N, C)
    assert z.shape == (2, 4, 3, 5)
    assert torch.equal(z.detach(), F.one_hot(z.argmax(-1), 5).float())  # forward value: the hard sample
    (z * torch.randn_like(z)).sum().backward()
    assert logits.grad.abs().sum() > 0
    soft = gumbel_softmax_sample(logits, 0.5, 2, hard=False)
    assert torch.allclose(soft.sum(-1), torch.ones(2, 4, 3)) and (soft < 1).any()


def test_temperature_schedule():
    tau = ExponentialDecay(rate=1e-3, minimum=0.5)
    assert tau(0) == 1.0 and tau(100) == pytest.approx(math.exp(-0.1)) and tau(10**6) == 0.5


def test_model_terms_and_temperature_reaches_the_model(cfg_factory):
    cfg = cfg_factory("model=gumbel", "trainer=debug", "posterior.num_latents=6", "posterior.num_classes=4")
    data = build_data(cfg)
    torch.manual_seed(0)
    model, objective = build_model(cfg, data.image_shape), build_objective(cfg)
    x = model.likelihood.prepare(data.train.images[:8])
    model.train()
    terms = objective(model, x, 0, data.train.labels[:8])
    assert terms["kl_per_dim"].shape == (6,) and terms["loss"].shape == (8,)
    assert torch.allclose(terms["rate"], -terms["elbo"] - terms["distortion"], atol=1e-3)
    terms["loss"].mean().backward()
    assert model.posterior.head.weight.grad.abs().sum() > 0
    assert objective.knobs(0)["temperature"] == 1.0
    model.eval()  # exact one-hot latents at evaluation
    t = model.latent_terms(x, None, 3)
    assert t.log_px.shape == (3, 8) and torch.allclose(t.log_pz, torch.tensor(6 * math.log(0.25)))
    samples = model.prior_dist().sample((5,))
    assert samples.shape == (5, 6, 4) and torch.equal(samples.sum(-1), torch.ones(5, 6))
    assert model.likelihood.mean(model.decode(samples)).shape == (5, 1, 28, 28)
