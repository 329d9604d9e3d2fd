"""vae-sample: every mode gives a grid of the expected size, as PNG and in TensorBoard; bad modes are refused."""
import torch
import pytest
from hydra import compose, initialize_config_module
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import make_cfg
from vae_cli.apps.sample import run_sample
from vae_cli.build import build_model
from vae_cli.apps.train import run_training
from vae_cli.data import fake_images
from vae_cli.errors import UserError
from vae_cli.apps.figures import FONT_PX
from vae_cli.apps.latent_modes import Arithmetic, LatentMap
from vae_cli.apps.sample_modes import Context, slerp


def grid_shape(n: int, nrow: int, h: int = 28, w: int = 28, top: int = 0) -> tuple[int, int, int]:
    """torchvision make_grid with padding 2, drawn 3x (28 px digits), with a `top` px band of column labels."""
    cols = min(nrow, n)
    rows = -(-n // cols)
    return 3, 3 * (rows * (h + 2) + 2) + top, 3 * (cols * (w + 2) + 2)


LABELS = FONT_PX + 8  # the band of column labels


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    run = tmp_path_factory.mktemp("sample_run")
    run_training(make_cfg("trainer=debug", "trainer.eval_every=30"), run)
    return run / "checkpoints" / "last.pt"


def sample(ckpt, tmp_path, *overrides):
    with initialize_config_module("vae_cli.configs", version_base="1.3"):
        cfg = compose("sample", overrides=[f"ckpt={ckpt}", f"out={tmp_path}", *overrides])
    return run_sample(cfg)


CASES = [
    (["mode=prior", "mode.num=16", "mode.nrow=4", "mode.sample_pixels=true"],
     {"prior": grid_shape(16, 4), "prior_pixels": grid_shape(16, 4)}),
    (["mode=prior", "mode.num=6", "mode.nrow=3", "mode.temperature=0.5"], {"prior": grid_shape(6, 3)}),
    (["mode=reconstruct", "mode.num=8", "mode.pairs_per_row=4"], {"reconstruct": grid_shape(16, 8, top=LABELS)}),
    (["mode=interpolate", "mode.pairs=2", "mode.steps=4"],
     {"interpolate_linear": grid_shape(12, 6, top=LABELS), "interpolate_slerp": grid_shape(12, 6, top=LABELS)}),
    (["mode=traverse", "mode.dims=3", "mode.steps=5"], {"traverse": grid_shape(15, 5, top=LABELS)}),
]


@pytest.mark.parametrize("overrides,shapes", CASES, ids=[c[0][0] + str(i) for i, c in enumerate(CASES)])
def test_mode_writes_png_of_expected_size(ckpt, tmp_path, overrides, shapes):
    paths = sample(ckpt, tmp_path, *overrides)
    assert set(paths) == set(shapes)
    for name, (c, h, w) in shapes.items():
        width, height = Image.open(paths[name]).size
        assert height == h and (width == w if name != "traverse" else width > w + 40)  # + row labels
    tags = EventAccumulator(str(tmp_path)).Reload().Tags()["images"]
    assert {f"vae-sample/{p.stem}" for p in paths.values()} <= set(tags)


def test_arithmetic_and_latent_scatter_on_a_checkpoint(ckpt, tmp_path):
    labels = fake_images().test.labels
    a, b, target = (int(v) for v in labels[:3])
    paths = sample(ckpt, tmp_path, "mode=arithmetic", f"mode.a={a}", f"mode.b={b}", f"mode.target={target}",
                   "mode.num=2", "mode.scales=[0,1]")
    n_rows = min(2, int((labels == target).sum()))
    _, h, w = grid_shape(5 * n_rows, 5, top=LABELS)  # columns a, b, c, c + 0 (a-b), a-b+c; labelled
    assert Image.open(paths[f"arithmetic_{a}-{b}+{target}"]).size == (w, h)
    pytest.importorskip("matplotlib")
    scatter = Image.open(sample(ckpt, tmp_path, "mode=latent_map")["latent_scatter"])
    assert scatter.mode == "RGB" and min(scatter.size) > 200


def tiny_context(latent_dim: int, num_classes: int | None = 10) -> Context:
    cfg = make_cfg("trainer=debug", f"latent_dim={latent_dim}", "model.encoder.hidden_sizes=[16]",
                   "model.decoder.hidden_sizes=[16]")
    data = fake_images(num_test=40)
    model = build_model(cfg, data.image_shape).eval()
    return Context(model, model.likelihood.prepare(data.test.images), data.test.labels, num_classes)


@torch.no_grad()
def test_latent_map_manifold_for_2d_latents_and_errors():
    grids = LatentMap(grid_size=3)(tiny_context(2))
    assert grids["latent_manifold"].shape[0] == 3 and min(grids["latent_manifold"].shape[1:]) > 3 * 28
    with pytest.raises(UserError, match="latent_dim >= 2"):
        LatentMap()(tiny_context(1))
    one = LatentMap(num_points=1)(tiny_context(8))  # PCA of one point: one component, padded (was IndexError)
    assert one["latent_scatter"].shape[0] == 3 and torch.isfinite(one["latent_scatter"]).all()


@torch.no_grad()
def test_arithmetic_refuses_unlabelled_data_and_unknown_classes():
    with pytest.raises(UserError, match="labelled dataset"):
        Arithmetic()(tiny_context(2, num_classes=None))
    with pytest.raises(UserError, match="class 12 is not a label"):
        Arithmetic(a=12)(tiny_context(2))


def test_bad_mode_values_are_one_clear_error(ckpt, tmp_path):
    with pytest.raises(UserError, match="temperature=0"):
        sample(ckpt, tmp_path, "mode=prior", "mode.temperature=0")
    with pytest.raises(UserError, match="mode.image=999"):
        sample(ckpt, tmp_path, "mode=traverse", "mode.image=999")


def test_slerp_endpoints_and_norm():
    z0, z1 = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    path = slerp(z0, z1, torch.linspace(0, 1, 5))  # (1, 5, 2)
    assert torch.allclose(path[0, 0], z0[0]) and torch.allclose(path[0, -1], z1[0], atol=1e-6)
    assert torch.allclose(path.norm(dim=-1), torch.full((1, 5), 2.0))


@pytest.mark.parametrize("model", ["cvae", "gumbel"])
def test_prior_mode_for_conditional_and_categorical_models(tmp_path, model):
    run = tmp_path / "run"
    run_training(make_cfg("trainer=debug", f"model={model}", "max_steps=4", "trainer.eval_every=4"), run)
    ckpt = run / "checkpoints" / "last.pt"
    paths = sample(ckpt, tmp_path / "a", "mode=prior", "mode.num=8", "mode.nrow=4")
    assert Image.open(paths["prior"]).size == grid_shape(8, 4)[:0:-1]
    if model == "cvae":  # one row per class (fake data: 10 classes), 4 styles across
        width, height = Image.open(paths["prior_per_class"]).size  # class labels left of the rows
        assert height == grid_shape(40, 4)[1] and width > grid_shape(40, 4)[2]
        paths = sample(ckpt, tmp_path / "b", "mode=prior", "mode.num=8", "mode.nrow=4", "mode.label=3")
        assert set(paths) == {"prior"}
    else:
        assert "prior_per_class" not in paths
        with pytest.raises(UserError, match="label=3"):
            sample(ckpt, tmp_path / "b", "mode=prior", "mode.label=3")


@pytest.mark.slow
def test_arithmetic_on_mnist_is_labelled_and_moves_away_from_c(tmp_path):
    from vae_cli.apps.latent_modes import Arithmetic
    from vae_cli.apps.sample_modes import Context
    from vae_cli.apps.train import run_training
    from vae_cli.build import build_data, build_model

    cfg = make_cfg("max_steps=300", "trainer.eval_every=300", "latent_dim=8", "device=cpu", "trainer.progress=false",
                   "dataset.val_size=500", "trainer.eval_batch_size=500", "trainer.num_images=4")
    run_training(cfg, tmp_path)
    model = build_model(cfg, (1, 28, 28)).eval()
    model.load_state_dict(torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["model"])
    test = build_data(cfg).test
    ctx = Context(model, model.likelihood.prepare(test.images), test.labels, 10)
    mode = Arithmetic(a=1, b=0, target=7, num=8, scales=[0.0, 0.5, 1.0])
    with torch.no_grad():
        cols = mode.columns(ctx)  # (8, 6, 1, 28, 28): a, b, c, c + 0 (a-b), c + 0.5 (a-b), a - b + c
        picture = mode(ctx)["arithmetic_1-0+7"]
    moved = [(cols[:, j] - cols[:, 3]).abs().mean().item() for j in (4, 5)]
    ends = (cols[0, 0] - cols[0, 1]).abs().mean().item()  # how far apart the decoded class means a and b are
    assert moved[1] > moved[0] > 0 and moved[1] > 0.25 * ends, (moved, ends)
    assert mode.labels() == ["a=1", "b=0", "c=7", "c", "c+0.5(a-b)", "a-b+c"]
    header = picture[:, :16]
    assert header.min() < 0.5 < header.max()  # dark label text on the white strip above the grid


@pytest.mark.parametrize("shape, nrow", [((64, 1, 28, 28), 8), ((10, 3, 5, 7), 4), ((1, 1, 4, 4), 8),
                                         ((17, 2, 3, 3), 5)])
def test_the_trainers_grid_draws_what_torchvision_draws(shape, nrow):
    import torchvision

    from vae_cli.pictures import make_grid

    x = torch.rand(shape)
    assert torch.equal(make_grid(x, nrow=nrow), torchvision.utils.make_grid(x, nrow=nrow))
