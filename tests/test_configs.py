"""Every option of every config group composes, builds and trains (parametrized over the files on disk)."""

import pytest
import torch

from conftest import REPO, has_dataset, make_cfg
from imagefiles import celeba_layout, flat_folder
from vae_cli.build import build_data, build_model, make, set_run_length
from vae_cli.apps.train import run_training
from vae_cli.errors import ConfigError, DataError

CONFIGS = REPO / "configs"
GROUPS = sorted(p.name for p in CONFIGS.iterdir() if p.is_dir() and not p.name.startswith("_"))
PLUGIN_GROUPS = {"launcher", "sweeper"}  # Hydra plugin presets (optional extra): tests/test_sweeps.py
OPTIONS = [(g, f.stem) for g in GROUPS if g not in PLUGIN_GROUPS for f in sorted((CONFIGS / g).glob("*.yaml"))]
# options that only make sense together with others
COMPANIONS = {("dataset", "cifar10"): ["likelihood=gaussian"], ("dataset", "folder"): ["likelihood=gaussian"],
              ("dataset", "celeba"): ["likelihood=gaussian", "trainer.batch_size=4"],
              ("schedule", "cyclical"): ["schedule.n_cycles=1"],  # 2 steps: more cycles would leave beta = 0
              **{(g, o): ["model=gumbel"] for g, o in [("posterior", "categorical"), ("prior", "uniform_categorical"),
                                                       ("objective", "gumbel")]},
              **{(g, o): ["model=vqvae"] for g, o in [("posterior", "vq"), ("prior", "uniform_codes"),
                                                      ("objective", "vq")]}}
NEEDS_FILES = {"fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}


def test_every_group_has_options():
    expected = {"dataset", "model", "likelihood", "objective", "trainer", "schedule", "posterior", "prior"}
    assert expected <= set(GROUPS)
    assert {"mnist", "fashion_mnist", "cifar10", "fake"} <= {o for g, o in OPTIONS if g == "dataset"}
    assert {"elbo", "beta_vae", "kl_annealing", "free_bits"} <= {o for g, o in OPTIONS if g == "objective"}


@pytest.mark.slow
@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_builds_and_trains_two_steps(group, option, tmp_path, data_dir):
    if group == "dataset" and option in NEEDS_FILES and not has_dataset(data_dir, NEEDS_FILES[option]):
        with pytest.raises(DataError, match="VAE_DATA_DIR"):
            build_data(make_cfg(f"dataset={option}", f"dataset.download=false"))
        pytest.skip(f"{NEEDS_FILES[option]} is not in ../shared/data (its missing-data error was checked)")
    overrides = ["trainer=debug", f"{group}={option}", *COMPANIONS.get((group, option), []),
                 "max_steps=2", "trainer.eval_every=2", "trainer.log_every=1", *written_data(group, option, tmp_path)]
    val = run_training(make_cfg(*overrides), tmp_path)
    assert torch.isfinite(torch.tensor(val["loss"]))  # the VQ-VAE has no elbo
    assert (tmp_path / "checkpoints" / "last.pt").is_file()


def written_data(group: str, option: str, root) -> list[str]:
    """dataset=folder and dataset=celeba read files a user placed: written here with Pillow."""
    cache = f"dataset.cache_dir={root / 'cache'}"
    if (group, option) == ("dataset", "folder"):
        return [f"dataset.path={flat_folder(root / 'imgs', n=40, size=(28, 28))}", "dataset.image_size=28", cache]
    if (group, option) == ("dataset", "celeba"):
        return [f"data_dir={celeba_layout(root / 'data')}", "dataset.image_size=28", cache]
    return []


def test_presets_set_what_they_say():
    assert make_cfg("objective=beta_vae").objective.weight.beta == 4.0
    assert make_cfg("objective=beta_vae", "beta=2").objective.weight.beta == 2.0  # the user's beta wins
    assert make_cfg("beta=3").objective.weight.beta == 3.0
    assert make_cfg("objective=free_bits").objective.free_bits == 0.25
    assert make_cfg("objective=kl_annealing").objective.weight.schedule._target_.endswith("LinearWarmup")
    assert make_cfg("objective=kl_annealing", "schedule=cyclical").objective.weight.schedule._target_.endswith("Cyclical")
    assert make_cfg("trainer=debug").dataset._target_.endswith("fake_images")
    assert make_cfg("trainer=debug", "dataset=mnist").dataset.name == "MNIST"
    debug = make_cfg("trainer=debug").trainer  # inherits trainer/default through its defaults list
    assert debug.batch_size == 32 and debug.cuda_graph == make_cfg().trainer.cuda_graph == "auto"
    assert make_cfg("model=gumbel").objective.free_bits == 0.0  # objective/gumbel inherits objective/elbo


def test_run_length_from_epochs_and_cyclical_period(tmp_path):
    cfg = make_cfg("trainer=debug", "max_steps=null", "max_epochs=3", "schedule=cyclical")
    data = build_data(cfg)
    assert set_run_length(cfg, len(data.train)) == 3 * (512 // 32)
    assert make(cfg.objective).weight.schedule.period == 3 * 16 // 4


@pytest.mark.parametrize("shape", [[1, 28, 28], [3, 32, 32]])
@pytest.mark.parametrize("model", ["mlp", "conv"])
def test_architectures_fit_both_image_shapes(model, shape):
    cfg = make_cfg("trainer=debug", f"model={model}", f"dataset.image_shape={shape}".replace(" ", ""),
                   "likelihood=gaussian")
    vae = build_model(cfg, tuple(shape))
    x = torch.rand(4, *shape)
    assert vae.decode(vae.encode(x).rsample()).base_dist.loc.shape == (4, *shape)


def test_conv_rejects_an_image_it_cannot_fit():
    with pytest.raises(ConfigError, match="divisible by 8"):
        build_model(make_cfg("model=conv", "model.encoder.channels=[8,8,8]"), (1, 28, 28))
