"""VQ-VAE: quantization, straight-through, loss terms against their formulas, EMA, restarts, code prior."""
import math

import pytest
import torch

from vae_cli.build import build_data, build_model, build_objective
from vae_cli.objectives.discrete import code_statistics
from vae_cli.errors import ConfigError
from vae_cli.models.pixelcnn import MaskedConv2d, PixelCNNPrior
from vae_cli.models.vq import VectorQuantizer


def quantizer(**kw):
    torch.manual_seed(0)
    vq = VectorQuantizer(in_features=3, num_codes=5, code_dim=2, **kw)
    vq.proj = torch.nn.Identity()  # features are z_e, to check against hand computations
    return vq


def test_nearest_code_and_straight_through():
    vq = quantizer(restart_threshold=0.0).eval()
    vq.codebook.data = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [3.0, 3.0], [-1.0, -1.0]])
    z_e = torch.tensor([[0.9, 0.1], [0.1, 0.2], [2.0, 2.5], [-0.7, -0.4]]).t().reshape(1, 2, 2, 2)
    z_e.requires_grad_(True)
    q = vq(z_e)
    assert q.codes.flatten().tolist() == [1, 0, 3, 4]
    e = vq.codebook[q.codes].permute(0, 3, 1, 2)
    assert torch.allclose(q.z_q, e)  # forward value: the code vectors
    assert torch.allclose(q.codebook_loss, ((e - z_e) ** 2).sum().reshape(1))
    assert torch.allclose(q.commitment, ((z_e - e) ** 2).sum().reshape(1))
    (q.z_q * torch.arange(8.0).view(1, 2, 2, 2)).sum().backward()
    assert torch.equal(z_e.grad, torch.arange(8.0).view(1, 2, 2, 2))  # straight-through: identity gradient


def test_codebook_loss_trains_codes_commitment_trains_encoder():
    vq = quantizer(restart_threshold=0.0).eval()
    z_e = torch.randn(2, 2, 3, 3, requires_grad=True)
    q = vq(z_e)
    q.codebook_loss.sum().backward()
    assert z_e.grad is None or z_e.grad.abs().sum() == 0  # sg(z_e)
    assert vq.codebook.grad.abs().sum() > 0
    vq.codebook.grad = None
    vq(z_e).commitment.sum().backward()
    assert vq.codebook.grad is None and z_e.grad.abs().sum() > 0  # sg(e)


def test_ema_moves_codes_toward_assigned_encodings():
    vq = quantizer(ema=True, decay=0.9, restart_threshold=0.0)
    vq.initialized.fill_(True)  # keep the hand-set codebook (no data init)
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0], [5.0, -5.0], [-5.0, -5.0]]))
    vq.embed_sum.copy_(vq.codebook)
    target = torch.tensor([1.0, 1.0])
    z_e = (target.view(1, 2, 1, 1) + 0.1 * torch.randn(4, 2, 3, 3))
    before = (vq.codebook[0] - target).norm()
    for _ in range(5):
        vq.train()(z_e)
    after = (vq.codebook[0] - target).norm()
    assert after < 0.7 * before
    assert torch.allclose(vq.codebook[1:], torch.tensor([[5.0, 5.0], [-5.0, 5.0], [5.0, -5.0], [-5.0, -5.0]]), atol=1e-3)  # unassigned codes stay


def test_first_batch_initializes_and_dead_codes_restart():
    vq = quantizer(restart_threshold=0.5, decay=0.5)
    z_e = torch.randn(3, 2, 4, 4) + 10.0  # far from the initial codebook
    vq.train()(z_e)
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, 2)
    assert all((flat == c).all(1).any() for c in vq.codebook)  # every code now sits on an encoding
    vq.usage.copy_(torch.tensor([10.0, 0.0, 10.0, 10.0, 10.0]))
    vq.codebook.data[1] = -100.0
    vq.train()(z_e)
    assert (vq.codebook[1] > 0).all()  # the dead code moved onto the data


def test_code_statistics():
    perplexity, used = code_statistics(torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), 16)
    assert perplexity == pytest.approx(4.0) and used == 4
    assert code_statistics(torch.zeros(5, dtype=torch.long), 8)[0] == pytest.approx(1.0)


def test_vq_objective_terms(cfg_factory):
    cfg = cfg_factory("model=vqvae", "trainer=debug", "objective.commitment=0.5", "posterior.num_codes=16")
    data = build_data(cfg)
    torch.manual_seed(0)
    model, objective = build_model(cfg, data.image_shape), build_objective(cfg)
    x = model.likelihood.prepare(data.train.images[:6])
    objective(model.train(), x, 0)  # the first training batch initializes the codebook
    terms = objective(model.eval(), x, 1)  # eval: no codebook upkeep, so q below is the same
    assert set(terms) == {"loss", "distortion", "commitment", "codebook_loss", "perplexity", "codes_used"}
    q = model.quantize(x)
    assert q.codes.shape == (6, 7, 7) and q.z_e.shape == (6, 16, 7, 7)
    expected = -model.likelihood(model.decoder(q.z_q)).log_prob(x) + q.codebook_loss + 0.5 * q.commitment
    assert torch.allclose(terms["loss"], expected, rtol=1e-5)
    terms["loss"].mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    assert model.decode(q.codes).mean.shape == (6, 1, 28, 28)
    assert model.prior_dist().sample((3,)).shape == (3, 7, 7)


def test_bad_quantizer_config():
    with pytest.raises(ConfigError, match="num_codes"):
        VectorQuantizer(in_features=4, num_codes=1)


def test_masked_convs_are_causal():
    """The logits at position i do not depend on codes at i or after (raster order)."""
    torch.manual_seed(0)
    net = PixelCNNPrior(num_codes=6, channels=8, num_layers=3)
    codes = torch.randint(6, (1, 5, 5))
    emb = net.embed(codes).detach().requires_grad_(True)
    h = net.first(emb.permute(0, 3, 1, 2))
    for layer in net.layers:
        h = h + layer(torch.relu(h))
    out = net.out(h)
    i, j = 2, 3
    out[0, :, i, j].sum().backward()
    g = emb.grad[0].abs().sum(-1)  # (5, 5)
    order = torch.arange(25).view(5, 5)
    assert g[order >= i * 5 + j].sum() == 0 and g[order < i * 5 + j].sum() > 0
    m = MaskedConv2d(1, 1, 3, "A").mask
    assert m.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]


def test_code_prior_nll_and_sampling():
    torch.manual_seed(0)
    net = PixelCNNPrior(num_codes=4, channels=8, num_layers=1)
    codes = torch.randint(4, (3, 2, 3))
    logits = net(codes)
    by_hand = torch.log_softmax(logits, 1).gather(1, codes.unsqueeze(1)).squeeze(1).sum((1, 2))
    assert torch.allclose(net.log_prob(codes), by_hand)
    assert torch.allclose(net.bits_per_code(codes), -by_hand / (6 * math.log(2)))
    s = net.sample(4, (2, 3))
    assert s.shape == (4, 2, 3) and s.dtype == torch.long and 0 <= s.min() and s.max() < 4
