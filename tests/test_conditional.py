"""Conditional VAE: the label reaches encoder and decoder; build fills num_classes; the per-class grid."""
import pytest
import torch

from vae_cli.build import build_data, build_model, set_num_classes
from vae_cli.errors import ConfigError
from vae_cli.models.conditioning import LabelEmbedding, with_label
from vae_cli.pictures import class_grid, sample_grids, sample_images


def cvae(cfg_factory, *overrides):
    cfg = cfg_factory("model=cvae", "trainer=debug", *overrides)
    data = build_data(cfg)
    set_num_classes(cfg, data.num_classes)
    torch.manual_seed(0)
    return build_model(cfg, data.image_shape), data, cfg


@pytest.mark.parametrize("embed_dim", [None, 5])
def test_label_embedding_shapes(embed_dim):
    emb = LabelEmbedding(num_classes=4, embed_dim=embed_dim)
    e = emb(torch.tensor([0, 3, 1]))
    assert e.shape == (3, emb.out_features) and emb.out_features == (embed_dim or 4)
    if embed_dim is None:
        assert torch.equal(e, torch.eye(4)[[0, 3, 1]])
    h = torch.randn(2, 3, 7)  # (S, B, F): the embedding broadcasts over the sample dim
    out = with_label(h, torch.tensor([0, 3, 1]), emb)
    assert out.shape == (2, 3, 7 + emb.out_features) and torch.equal(out[1, :, 7:], e.detach() if embed_dim else e)


def test_bad_num_classes():
    with pytest.raises(ConfigError, match="num_classes"):
        LabelEmbedding(num_classes=1)


def test_num_classes_from_data_and_label_changes_output(cfg_factory):
    model, data, cfg = cvae(cfg_factory)
    assert cfg.model.condition.num_classes == data.num_classes == 10
    x = model.likelihood.prepare(data.val.images[:4])
    y = data.val.labels[:4]
    q0, q1 = model.encode(x, y), model.encode(x, (y + 1) % 10)
    assert not torch.allclose(q0.mean, q1.mean)  # the encoder sees y
    z = q0.mean
    assert not torch.allclose(model.decode(z, y).base_dist.logits, model.decode(z, (y + 1) % 10).base_dist.logits)
    with pytest.raises(ValueError, match="labels"):
        model.decode(z)


def test_gradients_reach_the_embedding(cfg_factory):
    model, data, _ = cvae(cfg_factory, "model.condition.embed_dim=3")
    x, y = model.likelihood.prepare(data.train.images[:8]), data.train.labels[:8]
    t = model.latent_terms(x, y, 2)
    assert t.log_px.shape == (2, 8) and t.kl_per_dim.shape == (8, 32)
    (-t.log_px.mean()).backward()
    assert model.condition.embedding.weight.grad.abs().sum() > 0


def test_class_grid_rows_are_classes(cfg_factory):
    model, data, _ = cvae(cfg_factory)
    z = torch.randn(3, 32)
    grid = class_grid(model, z)
    assert grid.shape == (10 * 3, 1, 28, 28)
    row2 = model.likelihood.mean(model.decode(z, torch.full((3,), 2)))
    assert torch.allclose(grid[6:9], row2)
    grids = sample_grids(model, torch.randn(16, 32), torch.arange(16) % 10)
    assert set(grids) == {"samples/prior", "samples/per_class"} and grids["samples/per_class"][0].shape[0] == 80
    assert sample_images(model, 5, torch.full((5,), 7)).shape == (5, 1, 28, 28)
    with pytest.raises(ValueError):
        sample_images(model, 5)
