"""Trainer: a step changes parameters, one batch can be overfit, checkpoints round-trip, NaN stops the run."""
import math

import pytest
import torch

from conftest import make_cfg
from vae_cli.build import build_data, build_model, build_objective, make, set_run_length
from vae_cli.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from vae_cli.errors import NonFiniteError, UserError
from vae_cli.evaluation.collapse import active_units
from vae_cli.training.meter import Meter


def parts(*overrides):
    cfg = make_cfg("trainer=debug", *overrides)
    data = build_data(cfg)
    set_run_length(cfg, len(data.train))
    torch.manual_seed(0)
    return cfg, data, build_model(cfg, data.image_shape), build_objective(cfg)


def test_one_step_changes_every_parameter():
    cfg, data, model, objective = parts()
    before = {k: v.clone() for k, v in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = model.likelihood.prepare(data.train.images[:32])
    objective(model, x, 0)["loss"].mean().backward()
    opt.step()
    unchanged = [k for k, v in model.named_parameters() if torch.equal(v, before[k])]
    assert unchanged == []


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [[], ["model=conv", "likelihood=gaussian"]])
def test_loss_falls_when_overfitting_one_batch(overrides):
    cfg, data, model, objective = parts(*overrides)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = model.likelihood.prepare(data.train.images[:16])
    losses = []
    for step in range(100):
        loss = objective(model, x, step)["loss"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:10]) / 10


def test_checkpoint_round_trip_restores_model_and_rng(tmp_path):
    _, _, model, _ = parts()
    torch.manual_seed(5)
    state = {"model": model.state_dict(), "rng": rng_state(), "step": 7, "config": {"a": [1, 2]}}
    save_checkpoint(tmp_path / "c.pt", state)
    expected = torch.rand(3)
    loaded = load_checkpoint(tmp_path / "c.pt")
    _, _, other, _ = parts("seed=1")
    torch.manual_seed(99)
    other.load_state_dict(loaded["model"])
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    set_rng_state(loaded["rng"])
    assert torch.equal(torch.rand(3), expected)
    assert loaded["step"] == 7 and loaded["config"] == {"a": [1, 2]} and "version" in loaded
    assert not list(tmp_path.glob("*.tmp"))


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"model": {}, "config": {}})
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "c.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt"):
        load_checkpoint(tmp_path / "c.pt")
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_meter_names_the_first_non_finite_step_and_term():
    meter = Meter(torch.device("cpu"))
    ok = {k: torch.ones(4) for k in ("loss", "elbo", "distortion", "rate", "bits_per_dim")}
    meter.add(ok, torch.tensor(1.0), step=0)
    meter.add({**ok, "rate": torch.tensor([1.0, math.inf, 1.0, 1.0])}, torch.tensor(1.0), step=1)
    meter.add({**ok, "loss": torch.full((4,), math.nan)}, torch.tensor(1.0), step=2)
    with pytest.raises(NonFiniteError, match=r"step 1: .*rate=inf"):
        meter.means()


def test_nan_in_training_stops_the_run_with_the_step(tmp_path):
    cfg = make_cfg("trainer=debug", "trainer.lr=1e30", "max_steps=20", "trainer.log_every=1")
    with pytest.raises(NonFiniteError, match=r"non-finite value at step \d+"):
        from vae_cli.apps.train import run_training
        run_training(cfg, tmp_path)


def test_active_units_counts_dims_whose_mean_varies():
    means = torch.cat([torch.randn(500, 2), torch.full((500, 3), 0.3) + 0.01 * torch.randn(500, 3)], dim=1)
    assert active_units(means) == 2


def test_summary_leaves_out_undefined_active_units_but_shows_a_nan_elbo():
    from vae_cli.pictures import summary

    assert summary({"elbo": -90.0, "active_units": float("nan")}) == "elbo -90"
    assert summary({"elbo": float("nan"), "active_units": 3}) == "elbo nan  active_units 3"


def test_trainer_rejects_bad_values():
    with pytest.raises(UserError, match="lr=-1"):
        make(make_cfg("trainer.lr=-1", "max_steps=5").trainer)
    with pytest.raises(UserError, match="bf16"):
        make(make_cfg("trainer.precision=fp8", "max_steps=5").trainer)
