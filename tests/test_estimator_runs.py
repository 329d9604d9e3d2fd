"""The estimator, posterior, prior and hierarchical options in training: gradients reach every parameter,
TensorBoard gets their terms, diagnostics that do not apply say so, and real MNIST improves their bound."""
import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import make_cfg
from vae_cli.build import build_model, build_objective
from vae_cli.apps.train import run_training
from vae_cli.errors import ConfigError

NEW_OPTIONS = ["objective=iwae", "posterior=mixture", "posterior=planar", "posterior=iaf", "prior=mixture",
               "prior=vamp", "model=hierarchical"]


def scalars(run_dir) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return acc


@pytest.mark.parametrize("option", NEW_OPTIONS)
def test_one_step_changes_every_parameter(option):
    """Mixture weights (implicit reparameterization), flow heads, pseudo-inputs and upper layers all learn."""
    torch.manual_seed(0)
    cfg = make_cfg("trainer=debug", option, "latent_dim=4", "prior.num_pseudo=5" if option == "prior=vamp" else "seed=0")
    model, objective = build_model(cfg, (1, 28, 28)), build_objective(cfg)
    before = {k: v.clone() for k, v in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3))
    objective(model, x, 0)["loss"].mean().backward()
    opt.step()
    assert [k for k, v in model.named_parameters() if torch.equal(v, before[k])] == []


def test_iwae_on_the_hierarchical_model_logs_bound_ess_and_kl_per_layer(tmp_path):
    cfg = make_cfg("trainer=debug", "objective=iwae", "objective.num_samples=3", "model=hierarchical",
                   "max_steps=4", "trainer.eval_every=2", "trainer.log_every=2")
    val = run_training(cfg, tmp_path)
    assert val["elbo"] <= val["iwae_bound"] + 1.0 and 1.0 <= val["ess"] <= 3.0
    tags = set(scalars(tmp_path).Tags()["scalars"])
    assert {"train/iwae_bound", "train/ess", "val/iwae_bound", "val/ess"} <= tags
    assert {"kl_per_layer/layer_1", "kl_per_layer/layer_2"} <= tags
    assert len([t for t in tags if t.startswith("kl_per_dim/dim_")]) == 100 + 32  # z_1 then z_2


def test_flow_posterior_reports_per_dim_diagnostics_as_not_applicable(tmp_path):
    cfg = make_cfg("trainer=debug", "posterior=iaf", "max_steps=2", "trainer.eval_every=2", "trainer.log_every=1")
    val = run_training(cfg, tmp_path)
    assert math.isnan(val["active_units"])
    assert not [t for t in scalars(tmp_path).Tags()["scalars"] if t.startswith("kl_per_dim/")]


def test_vamp_prior_with_a_flow_posterior_is_a_clear_error(tmp_path):
    cfg = make_cfg("trainer=debug", "prior=vamp", "posterior=planar", "max_steps=2")
    with pytest.raises(ConfigError, match="posterior=gaussian or mixture"):
        run_training(cfg, tmp_path, {"prior": "vamp", "posterior": "planar"})


def test_experiment_presets_reproduce_the_iwae_paper_architectures():
    one = make_cfg("experiment=iwae_paper_tanh_1layer")
    assert one.model.encoder.hidden_sizes == [200, 200] and one.latent_dim == 50
    assert one.model.encoder.activation == "Tanh" and one.objective._target_.endswith("IWAE")
    two = build_model(make_cfg("experiment=iwae_paper_tanh_2layer"), (1, 28, 28))
    linears = [m for m in two.modules() if isinstance(m, torch.nn.Linear)]
    sizes = {(m.in_features, m.out_features) for m in linears}
    assert {(784, 200), (200, 200), (200, 100), (100, 100), (100, 2 * 50), (50, 100), (100, 2 * 100)} <= sizes


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [["objective=iwae", "objective.num_samples=3"], ["posterior=iaf"],
                                       ["posterior=mixture"], ["prior=vamp", "prior.num_pseudo=50"],
                                       ["model=hierarchical"]], ids=lambda o: o[0])
def test_short_real_mnist_run_improves_the_validation_bound(overrides, tmp_path):
    cfg = make_cfg("dataset=mnist", "dataset.val_size=500", "max_steps=120", "trainer.eval_every=120",
                   "trainer.log_every=50", "trainer.eval_batch_size=500", "trainer.num_images=16", *overrides)
    run_training(cfg, tmp_path)
    key = "val/iwae_bound" if overrides[0] == "objective=iwae" else "val/elbo"
    acc = scalars(tmp_path)
    curve = acc.Scalars(key.replace("val/", "val_at_step_0/")) + acc.Scalars(key)  # step 0 is logged apart
    assert [e.step for e in curve] == [0, 120]
    assert curve[-1].value > curve[0].value + 120  # about -545 nats at step 0
