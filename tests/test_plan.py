"""The start-up plan: every data-free check before any data loads, the data-free parts built once, what a resumed
run may change read from the constructors, and a knob that is one constructor argument plus one YAML line."""
import inspect
from importlib.resources import files

import pytest
import torch
from clitools import TINY, scalars
from omegaconf import OmegaConf

from vae_cli import build
from vae_cli.apps.train import run_training
from vae_cli.errors import ConfigError, DataError
from vae_cli.plan import fit_to_data, make_plan
from vae_cli.training.trainer import Trainer


def absent_data(cfg_factory, tmp_path, *overrides):
    """Fashion-MNIST looked for in an empty dir, downloads off: loading it fails, so a refusal before is the plan's."""
    return cfg_factory("dataset=fashion_mnist", *overrides, f"data_dir={tmp_path / 'empty'}", "dataset.download=false",
                       "device=cpu")


def test_the_plan_needs_no_data_and_refuses_data_free_values_before_the_data(tmp_path, cfg_factory):
    plan = make_plan(absent_data(cfg_factory, tmp_path, "max_steps=5"), tmp_path / "run")
    objective, trainer = plan.parts
    assert isinstance(trainer, Trainer) and trainer.max_steps == 5 and plan.resume is None
    assert plan.classes["model"].__name__ == "VAE" and plan.device == torch.device("cpu")
    for bad, message in [("trainer.lr=0", "trainer.lr=0 must be a finite number > 0"),
                         ("trainer.threads=0", "trainer.threads=0 must be a positive integer or null"),
                         ("schedule=cyclical schedule.ratio=2", "schedule.ratio=2 must be in (0, 1]"),
                         ("optimizer.weight_decay=-1", "optimizer: Invalid weight_decay value: -1"),
                         ("lr_schedule=cosine lr_schedule.warmup_steps=-1",
                          "lr_schedule.warmup_steps=-1 must be an integer >= 0"),
                         ("trainer.eval_at_start=maybe", "trainer.eval_at_start='maybe' must be true or false"),
                         ("max_steps=null max_epochs=2 trainer.lr=0", "trainer.lr=0 must be a finite number > 0"),
                         ("dataset.val_size=0", "dataset.val_size=0 must be a count >= 1 or a fraction in (0, 1)"),
                         ("model.encoder.hidden_sizes=[]", "model.encoder.hidden_sizes=[] must be a non-empty list of "
                                                           "positive integers (the last is the feature width)"),
                         ("likelihood=gaussian likelihood.sigma=-1", "likelihood.sigma=-1 must be a finite number > 0")]:
        cfg = absent_data(cfg_factory, tmp_path, "max_steps=5", *bad.split())
        with pytest.raises(ConfigError) as err:
            run_training(cfg, tmp_path / "run")  # refused by the plan: the data would raise DataError
        assert str(err.value) == message
    with pytest.raises(DataError):
        run_training(absent_data(cfg_factory, tmp_path, "max_steps=5"), tmp_path / "run")


def test_data_free_parts_are_built_once_before_or_right_after_the_data(tmp_path, cfg_factory, monkeypatch):
    built = []
    real = build.build_trainer
    monkeypatch.setattr(build, "build_trainer", lambda cfg: built.append(cfg.max_steps) or real(cfg))
    for overrides, when in [(["max_steps=7"], "plan"), (["max_steps=null", "max_epochs=2"], "data")]:
        built.clear()
        cfg = cfg_factory(*TINY, *overrides)
        plan = make_plan(cfg, tmp_path / when)
        assert (plan.parts is not None) == (when == "plan") and len(built) == (when == "plan")
        objective, trainer = fit_to_data(plan, build.build_data(cfg))
        steps = 7 if when == "plan" else 2 * (512 // 16)  # max_epochs x full batches of the 512 fake images
        assert built == [steps] and trainer.max_steps == steps == cfg.max_steps


def test_a_resumed_run_may_change_the_keys_marked_on_constructor_arguments(tmp_path, cfg_factory):
    may = make_plan(cfg_factory(*TINY, "max_steps=5"), tmp_path).may_change
    for key in ["resume", "max_steps", "device", "data_dir", "trainer.log_every", "trainer.eval_every",
                "trainer.keep_last", "trainer.nonfinite", "trainer.max_skips", "trainer.num_images",
                "trainer.max_steps", "trainer.eval_batch_size", "trainer.eval_at_start"]:
        assert key in may, key
    for key in ["trainer.lr", "trainer.batch_size", "latent_dim", "seed", "objective.free_bits"]:
        assert key not in may, key
    assert {"dataset.root", "dataset.download"} <= set(make_plan(cfg_factory("max_steps=5"), tmp_path).may_change)


def test_every_trainer_knob_is_one_constructor_argument_and_one_yaml_line():
    """The YAML holds exactly the trainer's knobs (build.py fills optimizer and lr_schedule from their groups): a
    knob is added in these two places, its rule and resumability annotated on its field (training/knobs.py)."""
    yaml = OmegaConf.create((files("vae_cli.configs") / "trainer" / "default.yaml").read_text())
    keywords = set(inspect.signature(Trainer.from_knobs).parameters) - {"optimizer", "lr_schedule"}
    assert set(yaml) - {"_target_"} == keywords


@pytest.mark.parametrize("at_start", [True, False])
def test_eval_at_start_decides_whether_step_0_is_validated(tmp_path, cfg_factory, at_start):
    run_training(cfg_factory(*TINY, "max_steps=10", "trainer.eval_every=5", f"trainer.eval_at_start={at_start}"),
                 tmp_path)
    logged = scalars(tmp_path)
    assert [step for step, _ in logged["val/elbo"]] == [5, 10]
    assert ("val_at_step_0/elbo" in logged) == at_start  # tblog.py: the step-0 validation's own section


def test_eval_at_start_may_change_when_a_run_resumes(tmp_path, cfg_factory):
    run_training(cfg_factory(*TINY, "max_steps=4", "trainer.eval_every=2"), tmp_path)
    cfg = cfg_factory(*TINY, "max_steps=6", "trainer.eval_every=2", "trainer.eval_at_start=false", "resume=true")
    run_training(cfg, tmp_path)
    assert [s for s, _ in scalars(tmp_path)["val/elbo"]] == [2, 4, 6]
    with pytest.raises(ConfigError, match="trainer.lr: 0.001 -> 0.002"):  # what is trained must still match
        run_training(cfg_factory(*TINY, "max_steps=8", "trainer.lr=0.002", "resume=true"), tmp_path)
