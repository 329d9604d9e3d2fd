"""Math contracts: closed forms against Monte Carlo and hand formulas."""
import math

import pytest
import torch
from torch.distributions import Independent, Normal

from vae_cli.models.decoders import MLPDecoder
from vae_cli.models.encoders import MLPEncoder
from vae_cli.models.likelihoods import BernoulliLikelihood, GaussianLikelihood
from vae_cli.models.posteriors import DiagonalGaussian
from vae_cli.models.priors import StandardNormal
from vae_cli.models.vae import VAE, kl_per_dim
from vae_cli.objectives.elbo import ELBO, bits_per_dim, free_bits_rate
from vae_cli.errors import ConfigError
from vae_cli.schedules import (Constant, ConstantLR, CosineLR, Cyclical, ExponentialDecay, IWAEPaperLR, LinearWarmup,
                               StepLR, Weight)


def test_gaussian_kl_closed_form_matches_monte_carlo():
    torch.manual_seed(0)
    q = Independent(Normal(torch.randn(3, 4), torch.rand(3, 4) + 0.3), 1)
    p = Independent(Normal(torch.zeros(4), torch.ones(4)), 1)
    closed = kl_per_dim(q, p)  # (3, 4)
    assert closed.shape == (3, 4)
    z = q.rsample((200_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).mean(0)  # (3,)
    torch.testing.assert_close(closed.sum(-1), mc, atol=0.02, rtol=0.01)
    # and against the textbook formula per dim
    mu, s = q.base_dist.loc, q.base_dist.scale
    torch.testing.assert_close(closed, 0.5 * (mu**2 + s**2 - 1) - torch.log(s))


def test_bernoulli_log_prob_matches_hand_formula():
    torch.manual_seed(0)
    logits, x = torch.randn(2, 1, 3, 3) * 3, torch.randint(0, 2, (2, 1, 3, 3)).float()
    lp = BernoulliLikelihood((1, 3, 3))(logits).log_prob(x)
    p = torch.sigmoid(logits.double())
    hand = (x * torch.log(p) + (1 - x) * torch.log1p(-p)).sum((1, 2, 3))
    torch.testing.assert_close(lp.double(), hand, atol=1e-5, rtol=1e-5)
    # stable for extreme logits: finite, and close to 0 when the pixel agrees
    big = BernoulliLikelihood((1, 1, 1))(torch.full((1, 1, 1, 1), 80.0)).log_prob(torch.ones(1, 1, 1, 1))
    assert torch.isfinite(big).all() and big.abs().item() < 1e-6


@pytest.mark.parametrize("mode", ["fixed", "global", "per_pixel"])
def test_gaussian_log_prob_matches_hand_formula(mode):
    torch.manual_seed(0)
    lik = GaussianLikelihood((1, 2, 2), sigma=0.3, sigma_mode=mode)
    mean, x = torch.rand(5, 1, 2, 2), torch.rand(5, 1, 2, 2)
    sigma = lik.sigma()
    hand = (-0.5 * ((x - mean) / sigma) ** 2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)).sum((1, 2, 3))
    torch.testing.assert_close(lik(mean).log_prob(x), hand)
    expected_sigma = 0.3 + (0.0 if mode == "fixed" else 1e-3)
    torch.testing.assert_close(sigma.flatten()[0].item(), expected_sigma, rtol=1e-5, atol=1e-6)
    assert sum(p.numel() for p in lik.parameters()) == {"fixed": 0, "global": 1, "per_pixel": 4}[mode]


def test_gaussian_density_integrates_to_one():
    """A real normalized density: integrate p(x) over a grid for one pixel."""
    lik = GaussianLikelihood((1, 1, 1), sigma=0.2)
    xs = torch.linspace(-2, 3, 20001).view(-1, 1, 1, 1)
    density = lik(torch.full_like(xs, 0.5)).log_prob(xs).exp()
    assert abs(torch.trapezoid(density, xs.flatten()).item() - 1.0) < 1e-4


def test_free_bits_rate_value_and_gradient():
    kl = torch.tensor([[0.1, 2.0, 0.3], [0.2, 1.0, 0.1]], requires_grad=True)  # (B=2, D=3)
    rate = free_bits_rate(kl, 0.25)
    # batch means per dim: 0.15, 1.5, 0.2 -> max(0.25, .) = 0.25, 1.5, 0.25 -> 2.0
    assert rate.mean().item() == pytest.approx(2.0)
    rate.mean().backward()
    torch.testing.assert_close(kl.grad, torch.tensor([[0.0, 0.5, 0.0], [0.0, 0.5, 0.0]]))


def test_schedules_at_given_steps():
    assert Constant()(12345) == 1.0
    warm = LinearWarmup(warmup_steps=100)
    assert [warm(s) for s in (0, 25, 100, 500)] == [0.0, 0.25, 1.0, 1.0]
    assert LinearWarmup(warmup_steps=100, start=0.5)(50) == pytest.approx(0.75)
    cyc = Cyclical(total_steps=400, n_cycles=4, ratio=0.5)  # period 100, rises over 50 steps
    assert [cyc(s) for s in (0, 25, 50, 99, 100, 125, 399)] == [0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0]


def tiny_vae() -> VAE:
    """Real parts, tiny sizes: 2x2 binary images, 3 latent dims."""
    return VAE(MLPEncoder((1, 2, 2), [4]), DiagonalGaussian(4, 3), MLPDecoder(3, (1, 2, 2), 1, [4]),
               BernoulliLikelihood((1, 2, 2)), StandardNormal(3))


def test_beta_one_without_free_bits_loss_is_negative_elbo():
    torch.manual_seed(0)
    model, x = tiny_vae(), torch.randint(0, 2, (8, 1, 2, 2)).float()
    terms = ELBO()(model, x, step=0)
    torch.testing.assert_close(terms["loss"], -terms["elbo"])
    torch.testing.assert_close(terms["elbo"], -(terms["distortion"] + terms["rate"]))
    assert terms["kl_per_dim"].shape == (3,)
    torch.testing.assert_close(terms["kl_per_dim"].sum(), terms["rate"].mean())


def test_beta_and_schedule_scale_the_rate_only():
    torch.manual_seed(0)
    model, x = tiny_vae(), torch.randint(0, 2, (8, 1, 2, 2)).float()
    obj = ELBO(Weight(beta=4.0, schedule=LinearWarmup(warmup_steps=10)))
    torch.manual_seed(1)
    terms = obj(model, x, step=5)  # beta_t = 4 * 0.5
    torch.testing.assert_close(terms["loss"], terms["distortion"] + 2.0 * terms["rate"])


def test_bits_per_dim_units():
    nats = torch.tensor([784 * math.log(2.0)])  # 1 bit per dim
    assert bits_per_dim(nats, 784, 0.0).item() == pytest.approx(1.0)
    # a density on [0,1] of 1 everywhere is 8 bits/dim on the 8-bit scale
    assert bits_per_dim(torch.zeros(1), 784, math.log(256.0)).item() == pytest.approx(8.0)


def _optimizer(lr: float = 1e-3) -> torch.optim.Adam:
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr)


STEP_SCHEDULES = {  # every step-dependent knob: its Python-int reference and its step-tensor form must agree
    "constant": lambda n: Constant(),
    "linear": lambda n: LinearWarmup(warmup_steps=n // 3, start=0.1),
    "cyclical": lambda n: Cyclical(total_steps=n, n_cycles=3, ratio=0.4),
    "temperature": lambda n: ExponentialDecay(rate=3e-3, minimum=0.5),
    "lr constant": lambda n: ConstantLR(_optimizer(), n),
    "lr cosine": lambda n: CosineLR(_optimizer(), n, warmup_steps=n // 10, min_factor=0.05),
    "lr step": lambda n: StepLR(_optimizer(), n, step_size=n // 5, gamma=0.7),
    "lr iwae_paper": lambda n: IWAEPaperLR(_optimizer(), n),
}


@pytest.mark.parametrize("name", STEP_SCHEDULES)
def test_step_tensor_knobs_equal_the_python_int_versions_at_every_step(name):
    n = 3280
    schedule = STEP_SCHEDULES[name](n)
    steps = torch.arange(n + 50)
    from_tensor = torch.stack([torch.as_tensor(schedule(s), dtype=torch.float32) for s in steps])  # 0-dim each
    from_int = torch.tensor([schedule.value(s) for s in range(n + 50)], dtype=torch.float32)
    torch.testing.assert_close(from_tensor, from_int, rtol=2e-6, atol=1e-7)
    assert all(isinstance(schedule(s), float) for s in (0, n // 2, n))


def test_weight_is_beta_times_the_schedule_for_int_and_tensor_steps():
    w = Weight(beta=4.0, schedule=LinearWarmup(warmup_steps=10))
    assert w(5) == 2.0 and torch.equal(w(torch.tensor(5)), torch.tensor(2.0))
    assert Weight(beta=3.0)(torch.tensor(7)) == 3.0  # a constant schedule needs no device op at all


def test_iwae_paper_schedule_scales_the_papers_stages_to_the_run():
    """Burda et al. 2016: 3^i passes at 1e-3 * 10^(-i/7), i = 0..7, 3280 passes: with 3280 steps, stage i starts
    at step sum_{j<i} 3^j exactly."""
    opt = _optimizer(1e-3)
    sched = IWAEPaperLR(opt, 3280)
    assert sched.starts == [1, 4, 13, 40, 121, 364, 1093]
    for i, start in enumerate([0, *sched.starts]):
        sched.apply(start)
        assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * 10 ** (-i / 7))
    half = IWAEPaperLR(_optimizer(), 1640)  # half the steps: the same fractions of the run
    assert half.starts == [round(s / 2) for s in sched.starts]


def test_cosine_lr_warms_up_then_decays_to_its_floor():
    sched = CosineLR(_optimizer(2e-3), 101, warmup_steps=10, min_factor=0.1)
    assert sched.value(0) == pytest.approx(0.1) and sched.value(9) == 1.0 and sched.value(10) == 1.0
    assert sched.value(100) == pytest.approx(0.1) and sched.value(55) == pytest.approx(0.55)
    with pytest.raises(ConfigError, match="warmup_steps=200"):
        CosineLR(_optimizer(), 100, warmup_steps=200)
