"""likelihood=discretized_logistic against brute force and a direct float64 implementation."""
import math

import pytest
import torch

from vae_cli.errors import ConfigError
from vae_cli.models.discretized import DiscretizedLogisticLikelihood

VALUES = torch.arange(256, dtype=torch.float64)


def mixture(channels: int, k: int, pixels: int = 1, seed: int = 0, scale_shift: float = 0.0):
    """A likelihood over (C, 1, pixels) images and its distribution for random decoder params."""
    torch.manual_seed(seed)
    lik = DiscretizedLogisticLikelihood((channels, 1, pixels), num_mixtures=k)
    params = torch.randn(1, lik.out_channels, 1, pixels)
    c = channels
    params[:, k * (1 + c):k * (1 + 2 * c)] = params[:, k * (1 + c):k * (1 + 2 * c)] * 0.5 - 2.0 + scale_shift
    return lik, lik(params)


def all_values(channels: int) -> torch.Tensor:
    """Every 8-bit value of a C-channel pixel -> (256^C, C, 1, 1) in [0, 1]."""
    grids = torch.meshgrid(*[VALUES] * channels, indexing="ij")
    return torch.stack(grids, 0).reshape(channels, -1).T.reshape(-1, channels, 1, 1) / 255


def reference_log_prob(dist, x: torch.Tensor) -> torch.Tensor:
    """The same model written directly: probabilities as CDF differences in float64, mixed, then the log."""
    logits, means, log_scales, coeffs = (t.double()[0] for t in (dist.logits, dist.means, dist.log_scales,
                                                                     dist.coeffs))  # (K, [n,] H, W)
    y = 2 * x.double() - 1  # (N, C, H, W)
    weights = torch.softmax(logits, 0)  # (K, H, W)
    total = 0.0
    for k in range(len(logits)):
        prob, idx = torch.ones_like(y[:, 0]), 0
        for c in range(y.shape[1]):
            mean = means[k, c] + sum(coeffs[k, idx + j] * y[:, j] for j in range(c))
            idx += c
            s = torch.exp(log_scales[k, c])
            upper = torch.where(y[:, c] > 0.999, 1.0, torch.sigmoid((y[:, c] + 1 / 255 - mean) / s))
            lower = torch.where(y[:, c] < -0.999, 0.0, torch.sigmoid((y[:, c] - 1 / 255 - mean) / s))
            prob = prob * (upper - lower)
        total = total + weights[k] * prob
    return total.log().sum((-2, -1))


def test_the_256_values_of_a_grey_pixel_sum_to_one():
    _, dist = mixture(1, 10, pixels=64, seed=5)  # 64 pixels with different params; log_prob sums over pixels
    x = (VALUES / 255).float().view(256, 1, 1, 1).expand(256, 1, 1, 64)  # value v in every pixel
    per_pixel = reference_free_per_pixel(dist, x)  # (256, 64)
    assert torch.allclose(per_pixel.double().exp().sum(0), torch.ones(64, dtype=torch.float64), atol=1e-4)


def reference_free_per_pixel(dist, x: torch.Tensor) -> torch.Tensor:
    """log P of each pixel on its own: the distribution restricted to one pixel column at a time."""
    cols = []
    for i in range(x.shape[-1]):
        one = type(dist)(*(t[..., i:i + 1] for t in (dist.logits, dist.means, dist.log_scales, dist.coeffs)))
        cols.append(one.log_prob(x[..., i:i + 1]))
    return torch.stack(cols, -1)


def test_the_65536_values_of_a_two_channel_pixel_sum_to_one_with_the_channel_coupling():
    _, dist = mixture(2, 4, seed=1)
    assert dist.coeffs.abs().min() > 0  # the coupling is in play
    assert dist.log_prob(all_values(2)).double().exp().sum().item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.slow
def test_the_256_cubed_values_of_an_rgb_pixel_sum_to_one():
    _, dist = mixture(3, 3, seed=2)
    total = sum(dist.log_prob(chunk).double().exp().sum() for chunk in all_values(3).split(1 << 20))
    assert total.item() == pytest.approx(1.0, abs=1e-4)


def test_the_edge_bins_take_the_tails():
    lik = DiscretizedLogisticLikelihood((1, 1, 1), num_mixtures=1)
    for mean, log_scale in [(-3.0, -1.0), (0.2, -2.0), (3.0, 0.5)]:
        dist = lik(torch.tensor([0.0, mean, log_scale]).view(1, 3, 1, 1))
        s = math.exp(log_scale)
        first = 1 / (1 + math.exp(-((-1 + 1 / 255 - mean) / s)))  # P(v=0) = CDF at the first bin's upper edge
        last = 1 - 1 / (1 + math.exp(-((1 - 1 / 255 - mean) / s)))  # P(v=255) = 1 - CDF at the last's lower edge
        x = torch.tensor([0.0, 1.0]).view(2, 1, 1, 1)
        got = dist.log_prob(x).double().exp()
        assert got[0].item() == pytest.approx(first, rel=1e-4)
        assert got[1].item() == pytest.approx(last, rel=1e-4)


@pytest.mark.parametrize("channels", [1, 3])
def test_log_prob_matches_a_direct_float64_implementation(channels):
    _, dist = mixture(channels, 5, pixels=8, seed=3, scale_shift=1.0)
    x = torch.randint(0, 256, (100, channels, 1, 8)).float() / 255
    x[:10] = 0.0  # edge bins too
    x[10:20] = 1.0
    assert torch.allclose(dist.log_prob(x).double(), reference_log_prob(dist, x), atol=1e-3, rtol=1e-5)


def test_samples_follow_the_probabilities():
    _, dist = mixture(2, 3, seed=4, scale_shift=-1.5)  # sharp components: the mass sits on few values
    draws = dist.sample((40000,)).squeeze(1)  # (S, 2, 1, 1)
    codes = (draws * 255).round().long()
    assert torch.equal(codes.float() / 255, draws)  # every draw is one of the 8-bit values
    index = (codes[:, 0] * 256 + codes[:, 1]).flatten()
    empirical = torch.bincount(index, minlength=65536).double() / len(index)
    exact = dist.log_prob(all_values(2)).double().exp()
    assert 0.5 * (empirical - exact).abs().sum().item() < 0.05  # total variation distance


def test_bits_per_dim_are_discrete_and_mean_is_an_image():
    lik, dist = mixture(3, 10, pixels=4)
    assert lik.discrete_offset == 0.0
    assert lik.out_channels == 10 * (1 + 3 + 3 + 3)
    mean = lik.mean(dist)
    assert mean.shape == (1, 3, 1, 4) and 0 <= mean.min() and mean.max() <= 1
    images = torch.tensor([[0, 128, 255]], dtype=torch.uint8).view(1, 3, 1, 1)
    assert torch.equal(lik.prepare(images), images.float() / 255)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_num_mixtures_is_checked_by_the_constructor(bad):
    with pytest.raises(ConfigError, match=f"likelihood.num_mixtures={bad!r}"):
        DiscretizedLogisticLikelihood((3, 8, 8), num_mixtures=bad)
