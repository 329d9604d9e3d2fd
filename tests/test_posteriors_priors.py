"""Posterior and prior families: log-densities against explicit sums and autograd Jacobians."""
import math

import pytest
import torch
from torch.distributions import Independent, Normal

from vae_cli.models.flows import FlowSample, IAFPosterior, PlanarFlowPosterior
from vae_cli.models.mixtures import GaussianMixture, MixturePosterior
from vae_cli.models.priors import MixturePrior, VampPrior
from vae_cli.models.posteriors import DiagonalGaussian


def normal_logpdf(z, mu, sigma):
    return -0.5 * ((z - mu) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)


def explicit_mixture_logpdf(z, log_pi, loc, scale):
    """z (D,), log_pi (C,), loc/scale (C, D): log sum_c pi_c prod_d N(z_d), by plain Python loops."""
    total = 0.0
    for c in range(len(log_pi)):
        comp = sum(normal_logpdf(float(z[d]), float(loc[c, d]), float(scale[c, d])) for d in range(len(z)))
        total += math.exp(float(log_pi[c]) + comp)
    return math.log(total)


def test_mixture_posterior_log_prob_is_the_explicit_sum():
    torch.manual_seed(0)
    q = MixturePosterior(in_features=5, latent_dim=3, num_components=4)(torch.randn(2, 5))
    z = q.sample((6,))  # (6, 2, 3)
    q = GaussianMixture(q.log_pi.detach(), q.loc.detach(), q.scale.detach())
    got = q.log_prob(z)
    for s in range(6):
        for b in range(2):
            want = explicit_mixture_logpdf(z[s, b], q.log_pi[b], q.loc[b], q.scale[b])
            assert got[s, b].item() == pytest.approx(want, abs=1e-4)
    assert torch.allclose(q.mean, (q.log_pi.exp()[..., None] * q.loc).sum(1))


def test_mixture_rsample_matches_the_distribution_and_its_gradient():
    """Moments of exact draws, and the implicit reparameterization gradient of E[sum z^2]
    = sum_c pi_c sum_d (mu_cd^2 + sigma_cd^2) against the closed form, for logits, locs and scales."""
    torch.manual_seed(0)
    logits = torch.tensor([[0.3, -0.5, 0.1]], requires_grad=True)  # (B=1, C=3)
    loc = torch.tensor([[[-2.0, 1.0], [0.5, -1.0], [2.0, 0.0]]], requires_grad=True)  # (1, 3, 2)
    scale = torch.tensor([[[0.5, 1.0], [0.7, 0.3], [1.2, 0.8]]], requires_grad=True)
    q = GaussianMixture(logits, loc, scale)
    z = q.rsample((100_000,))  # (S, 1, 2)
    assert torch.allclose(z.mean(0), q.mean.detach(), atol=0.03)
    mc = torch.autograd.grad(z.pow(2).sum(-1).mean(), (logits, loc, scale))
    exact_value = (torch.softmax(logits, -1)[..., None] * (loc**2 + scale**2)).sum()
    exact = torch.autograd.grad(exact_value, (logits, loc, scale))
    for g_mc, g in zip(mc, exact):
        assert torch.allclose(g_mc, g, atol=0.05), (g_mc, g)


def flow_jacobian_logdet(posterior, h, z0):
    """log|det dz/dz0| of the flow of `posterior` at one z0 (D,), by torch.autograd.functional.jacobian."""
    q = posterior(h)
    transform = q.transform

    def f(v):
        return transform(v.view(1, 1, -1))[0].view(-1)

    return torch.linalg.slogdet(torch.autograd.functional.jacobian(f, z0))[1]


@pytest.mark.parametrize("make", [lambda: PlanarFlowPosterior(4, 3, num_layers=3),
                                  lambda: IAFPosterior(4, 3, num_layers=2, hidden=16)], ids=["planar", "iaf"])
def test_flow_log_q_is_base_density_minus_autograd_log_det(make):
    torch.manual_seed(0)
    posterior = make()
    h = torch.randn(1, 4)
    q = posterior(h)
    z, log_q = q.rsample_with_log_prob((5,))  # (5, 1, 3), (5, 1)
    assert q.log_prob(z) is log_q  # its own samples are scored without inverting
    z0 = q.base.base_dist.loc + q.base.base_dist.scale * torch.randn(5, 1, 3)  # the draws rsample makes
    _, log_det = q.transform(z0)  # (5, 1)
    for s in range(5):
        assert log_det[s, 0].item() == pytest.approx(flow_jacobian_logdet(posterior, h, z0[s, 0].detach()).item(),
                                                     abs=1e-4)
    assert log_det.abs().max() > 1e-3  # not the identity
    with pytest.raises(NotImplementedError):
        q.log_prob(z.clone())
    with pytest.raises(NotImplementedError):
        _ = q.mean


def test_iaf_is_autoregressive():
    """dz_i/dz0_j = 0 for j after i in the composed ordering: the Jacobian of one step is triangular."""
    torch.manual_seed(0)
    posterior = IAFPosterior(4, 5, num_layers=1, hidden=32)
    q = posterior(torch.randn(1, 4))
    jac = torch.autograd.functional.jacobian(lambda v: q.transform(v.view(1, 1, -1))[0].view(-1), torch.randn(5))
    assert torch.allclose(jac.triu(1), torch.zeros(5, 5))
    assert jac.tril(-1).abs().sum() > 0


def test_mixture_prior_log_prob_is_the_explicit_sum():
    torch.manual_seed(0)
    prior = MixturePrior(latent_dim=3, num_components=5)
    with torch.no_grad():
        prior.logits.copy_(torch.randn(5))
    p = prior()
    z = p.sample((4,))
    log_pi = torch.log_softmax(prior.logits, 0)
    scale = p.component_distribution.base_dist.scale
    for s in range(4):
        want = explicit_mixture_logpdf(z[s], log_pi.detach(), prior.loc.detach(), scale.detach())
        assert p.log_prob(z[s]).item() == pytest.approx(want, abs=1e-4)


def test_vamp_prior_is_the_average_posterior_of_the_pseudo_inputs():
    torch.manual_seed(0)
    head = DiagonalGaussian(in_features=12, latent_dim=3)

    def encode(u):  # (K, 1, 3, 4) -> q(z | u), batch (K,)
        return head(u.flatten(1))

    prior = VampPrior(image_shape=(1, 3, 4), num_pseudo=6)
    p = prior(encode=encode)
    z = p.sample((5,))  # (5, 3)
    q = encode(prior.pseudo_inputs())
    loc, scale = q.base_dist.loc.detach(), q.base_dist.scale.detach()  # (K, D)
    for s in range(5):
        want = math.log(sum(math.exp(sum(normal_logpdf(float(z[s, d]), float(loc[k, d]), float(scale[k, d]))
                                         for d in range(3))) for k in range(6)) / 6)
        assert p.log_prob(z[s]).item() == pytest.approx(want, abs=1e-4)


def test_flow_sample_rejects_points_it_did_not_draw():
    base = Independent(Normal(torch.zeros(2, 3), torch.ones(2, 3)), 1)
    q = FlowSample(base, lambda z: (z, torch.zeros(z.shape[:-1])))
    z = q.rsample()
    assert torch.allclose(q.log_prob(z), base.log_prob(z))
    with pytest.raises(NotImplementedError, match="own samples"):
        q.log_prob(torch.zeros(2, 3))
