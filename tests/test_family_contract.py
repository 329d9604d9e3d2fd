"""The family contract is an abstract class that tools rely on alone: every preset's family implements it in full,
terms are built by keyword, and no app, objective, build.py or distributed.py asks hasattr/getattr what a part
can do. The trainer's knobs are typed groups that check their own values."""
import inspect
import re
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import make_cfg
from vae_cli.build import build_model, target
from vae_cli.errors import ConfigError
from vae_cli.models.base import DensityFamily, Family, LatentTerms, NoDensityFamily, check_objective_kind
from vae_cli.models.vae import VAE
from vae_cli.objectives.discrete import VQObjective
from vae_cli.objectives.elbo import ELBO
from vae_cli.training import knobs
from vae_cli.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted(p.stem for p in (ROOT / "configs" / "model").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_implements_the_whole_contract(preset):
    family = target(make_cfg(f"model={preset}").model)
    assert issubclass(family, DensityFamily) != issubclass(family, NoDensityFamily)
    assert not inspect.isabstract(family), family.__abstractmethods__
    assert family.best_metric.name == ("elbo" if family.has_density else "loss")


def test_a_family_missing_a_contract_method_cannot_be_built():
    class NoTerms(DensityFamily):  # forgets latent_terms
        layer_dims = [2]

        def encode(self, x, y=None): ...

        def decode(self, z, y=None): ...

    assert NoTerms.__abstractmethods__ == {"latent_terms"}
    parts = build_model(make_cfg("latent_dim=2"), (1, 28, 28))
    with pytest.raises(TypeError, match="latent_terms"):
        NoTerms(parts.encoder, parts.posterior, parts.decoder, parts.likelihood, parts.prior)
    assert {"encode", "decode", "layer_dims"} <= Family.__abstractmethods__


def test_latent_terms_take_keywords_only():
    t = torch.zeros(1, 2)
    with pytest.raises(TypeError):
        LatentTerms(t, t, t)
    assert LatentTerms(log_px=t, log_pz=t, log_qz=t).kl_per_dim is None


def test_an_objective_declares_the_contract_it_calls():
    from vae_cli.models.vq import VQVAE

    assert ELBO.requires is DensityFamily and VQObjective.requires is NoDensityFamily
    check_objective_kind(VAE, ELBO)
    check_objective_kind(VQVAE, VQObjective)
    for family, objective in ((VAE, VQObjective), (VQVAE, ELBO)):
        with pytest.raises(ConfigError, match="does not apply to"):
            check_objective_kind(family, objective)


def test_no_tool_asks_hasattr_or_getattr_what_a_part_can_do():
    files = [*(ROOT / "vae_cli" / "apps").glob("*.py"), *(ROOT / "vae_cli" / "objectives").glob("*.py"),
             ROOT / "vae_cli" / "build.py", ROOT / "vae_cli" / "training" / "distributed.py"]
    found = [f"{f.name}:{i}" for f in files for i, line in enumerate(f.read_text().splitlines(), 1)
             if re.search(r"\b(hasattr|getattr)\(", line)]
    assert found == []


def test_every_trainer_key_belongs_to_one_typed_group():
    node = OmegaConf.load(ROOT / "configs" / "trainer" / "default.yaml")
    keys = set(node) - {"_target_"}
    grouped = [f.name for cls in knobs.GROUPS.values() for f in fields(cls)]
    assert sorted(grouped) == sorted(keys) and len(grouped) == len(set(grouped))
    takes = set(inspect.signature(Trainer.from_knobs).parameters) - {"optimizer", "lr_schedule"}
    assert takes == keys  # the key check (build.check_keys) reads this signature
    trainer = Trainer.from_knobs(max_steps=5, lr=0.1, eval_every=None, keep_last=0, cuda_graph=False)
    assert (trainer.loop.lr, trainer.evaluation.eval_every, trainer.checkpointing.keep_last) == (0.1, None, 0)
    assert trainer.speed.cuda_graph is False and trainer.reporting.progress == "auto"


@pytest.mark.parametrize("key, value, message", [
    ("batch_size", 0, "trainer.batch_size=0 must be a positive integer"),
    ("lr", -1.0, "trainer.lr=-1.0 must be a finite number > 0"),
    ("eval_every", 0, "trainer.eval_every=0 must be a positive integer or null"),
    ("keep_last", -1, "trainer.keep_last=-1 must be an integer >= 0"),
    ("nonfinite", "maybe", "trainer.nonfinite='maybe' must be raise or skip"),
    ("cuda_graph", "yes", "trainer.cuda_graph='yes' must be auto, true or false"),
    ("precision", "fp8", "trainer.precision='fp8'; choose one of fp32, bf16, auto"),
    ("momentum", 0.9, "trainer.momentum: the trainer takes no key 'momentum'"),
])
def test_each_group_refuses_a_bad_value_naming_the_key(key, value, message):
    with pytest.raises(ConfigError) as e:
        Trainer.from_knobs(max_steps=5, **{key: value})
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
