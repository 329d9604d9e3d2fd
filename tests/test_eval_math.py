"""The numbers vae-eval reports, checked against closed forms: IW-NLL, mutual information, Fréchet distance."""
import math

import pytest
import torch
import torch.nn as nn
from conftest import make_cfg
from torch.distributions import MultivariateNormal

from vae_cli.build import build_model
from vae_cli.evaluation.collapse import collapse_report, mutual_information
from vae_cli.evaluation.iw_nll import iw_log_likelihood
from vae_cli.models.decoders import MLPDecoder
from vae_cli.models.likelihoods import GaussianLikelihood
from vae_cli.models.posteriors import DiagonalGaussian
from vae_cli.models.priors import StandardNormal
from vae_cli.models.vae import VAE
from vae_cli.objectives.elbo import ELBO, log_weights
from vae_cli.evaluation.quality import frechet_distance, label_entropies

SHAPE, D, SIGMA = (1, 4, 4), 3, 0.5  # 16 pixels, 3 latents, fixed pixel noise


class Flatten(nn.Module):
    out_features = 16

    def forward(self, x):
        return x.flatten(1)


def linear_gaussian(scales=(2.0, 1.0, 0.0), exact: bool = False) -> tuple[VAE, torch.Tensor, torch.Tensor]:
    """x = W z + b + sigma * eps, W with orthogonal columns of norms `scales` (0 = a dead latent).

    The encoder is linear; with exact=False it is the true posterior shifted and widened (so IW has work
    to do). Returns the VAE, W (P, D) and b (P,)."""
    g = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(16, D, generator=g))
    w, b = basis * torch.tensor(scales), 0.3 * torch.randn(16, generator=g)
    decoder = MLPDecoder(D, SHAPE, out_channels=1, hidden_sizes=[])  # one Linear: z -> W z + b
    posterior = DiagonalGaussian(16, D)
    post_var = 1.0 / (1.0 + w.square().sum(0) / SIGMA**2)  # (D,) diagonal since W^T W is diagonal
    gain = post_var[:, None] * w.T / SIGMA**2  # (D, P): E[z|x] = gain (x - b)
    widen, shift = (1.0, 0.0) if exact else (2.5, 0.5)
    with torch.no_grad():
        decoder.net[0].weight.copy_(w)
        decoder.net[0].bias.copy_(b)
        posterior.head.weight.zero_()
        posterior.head.weight[:D] = gain
        posterior.head.bias[:D] = -gain @ b + shift
        posterior.head.bias[D:] = torch.log(torch.expm1(widen * post_var.sqrt() - posterior.min_scale))
    model = VAE(Flatten(), posterior, decoder, GaussianLikelihood(SHAPE, sigma=SIGMA), StandardNormal(D))
    return model.eval(), w, b


def true_log_px(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    cov = w @ w.T + SIGMA**2 * torch.eye(16)
    return MultivariateNormal(b, cov).log_prob(x.flatten(1))  # (N,)


def sample_x(w, b, n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, D, generator=g)
    return (z @ w.T + b + SIGMA * torch.randn(n, 16, generator=g)).view(n, *SHAPE)


@torch.no_grad()
def test_iw_estimate_approaches_closed_form_log_px_as_k_grows():
    model, w, b = linear_gaussian()
    x = sample_x(w, b, 64)
    truth = true_log_px(x, w, b)
    errors = {}
    for k in (1, 10, 100, 2000):
        torch.manual_seed(0)
        est = iw_log_likelihood(model, x, None, k=k, k_chunk=256)  # several chunks for k = 2000
        errors[k] = float((truth - est).mean())  # >= 0 in expectation: a lower bound
    assert errors[1] > errors[10] > errors[100] > 0, errors
    assert errors[1] > 2.0 and abs(errors[2000]) < 0.05, errors


@torch.no_grad()
def test_iw_with_exact_posterior_is_exact_for_any_k():
    model, w, b = linear_gaussian(exact=True)
    x = sample_x(w, b, 16)
    torch.manual_seed(0)
    assert torch.allclose(iw_log_likelihood(model, x, None, k=5, k_chunk=2), true_log_px(x, w, b), atol=1e-3)


@torch.no_grad()
def test_iw_with_k1_equals_single_sample_elbo_under_same_noise():
    model, w, b = linear_gaussian()
    x = sample_x(w, b, 32)
    torch.manual_seed(3)
    iw = iw_log_likelihood(model, x, None, k=1, k_chunk=1)
    torch.manual_seed(3)
    elbo_1 = log_weights(model.latent_terms(x, None, 1))[0]  # log p(x|z) + log p(z) - log q(z|x), one z
    assert torch.equal(iw, elbo_1)


@pytest.fixture(scope="module")
def trained_tiny():
    """A tiny MLP VAE on fake data after 150 Adam steps (seconds)."""
    cfg = make_cfg("trainer=debug", "latent_dim=4", "model.encoder.hidden_sizes=[64]",
                      "model.decoder.hidden_sizes=[64]")
    torch.manual_seed(0)
    from vae_cli.data import fake_images, prepare_fixed

    data = fake_images(num_train=256, num_test=64)
    model = build_model(cfg, data.image_shape)
    opt, objective = torch.optim.Adam(model.parameters(), lr=3e-3), ELBO()
    for step in range(150):
        x = model.likelihood.prepare(data.train.images[(step * 32) % 256:][:32])
        loss = objective(model, x, step)["loss"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), prepare_fixed(model.likelihood.prepare, data.test.images, 0)


@pytest.mark.slow
@torch.no_grad()
def test_iw_bound_is_above_elbo_and_improves_with_k(trained_tiny):
    model, x = trained_tiny
    torch.manual_seed(0)
    elbo = float(ELBO()(model, x, 0)["elbo"].mean())  # analytic KL
    bounds = []
    for k in (1, 8, 64):
        torch.manual_seed(k)
        bounds.append(float(iw_log_likelihood(model, x, None, k=k, k_chunk=16).mean()))
    assert abs(bounds[0] - elbo) < 2.0  # k = 1 is the ELBO, up to Monte Carlo noise
    assert bounds[2] > bounds[1] > elbo, (elbo, bounds)


@torch.no_grad()
def test_mutual_information_and_collapse_report_match_closed_form():
    """Exact posterior, one dead latent: I(x;z) = 0.5 log det(I + W^T W / sigma^2); dim 2 has KL 0."""
    model, w, b = linear_gaussian(scales=(2.0, 1.0, 0.0), exact=True)
    x = sample_x(w, b, 3000)
    y = torch.zeros(len(x), dtype=torch.long)
    truth = 0.5 * float(torch.logdet(torch.eye(D) + w.T @ w / SIGMA**2))
    torch.manual_seed(0)
    assert mutual_information(model, x, y, batch_size=500) == pytest.approx(truth, abs=0.1)
    kl = ELBO()(model, x, 0)["kl_per_dim"]
    report = collapse_report(model, x, y, kl, batch_size=500)
    assert report["collapsed_dims"] == [2] and report["active_units"] == 2
    assert [j for j, _ in report["kl_per_dim_sorted"]] == [0, 1, 2]
    assert "[2]" in report["verdict"] and report["verdict"].startswith("partial collapse")


def test_frechet_distance_matches_closed_form_for_gaussians():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200_000, 3, generator=g) * torch.tensor([1.0, 2.0, 0.5])
    b = torch.randn(200_000, 3, generator=g) * torch.tensor([2.0, 2.0, 1.0]) + torch.tensor([1.0, 0.0, -1.0])
    # diagonal covariances: tr(Sa + Sb - 2 sqrt(Sa Sb)) = sum (sa - sb)^2 over the standard deviations
    truth = 2.0 + (1 - 2) ** 2 + 0 + (0.5 - 1) ** 2
    assert frechet_distance(a, b) == pytest.approx(truth, rel=0.02)
    assert abs(frechet_distance(a, a)) < 1e-6


def test_label_entropies():
    uniform, onehot = torch.full((5, 10), 0.1), torch.eye(10)
    assert label_entropies(uniform)["label_entropy"] == pytest.approx(math.log(10))
    e = label_entropies(onehot)
    assert e["label_entropy"] == pytest.approx(0.0, abs=1e-5)
    assert e["marginal_label_entropy"] == pytest.approx(math.log(10))
