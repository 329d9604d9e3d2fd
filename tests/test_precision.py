"""trainer.precision on the CPU: bf16 autocast for the matmuls, fp32 for densities, loss, weights and Adam state."""
import logging

import pytest
import torch

from vae_cli.build import build_data, build_model, build_objective, build_trainer, set_run_length
from vae_cli.training import speed
from vae_cli.training.trainer import Run
from vae_cli.training.vae_task import VAETask


def fit(cfg_factory, tmp_path, *overrides):
    cfg = cfg_factory("trainer=debug", "device=cpu", "max_steps=1", "trainer.eval_every=1", *overrides)
    torch.manual_seed(cfg.seed)
    data = build_data(cfg)
    set_run_length(cfg, len(data.train))
    model, objective, trainer = build_model(cfg, data.image_shape), build_objective(cfg), build_trainer(cfg)
    seen = []  # (autocast on?, dtype) of every Linear's output during training
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((torch.is_autocast_enabled("cpu"), o.dtype)))
             for m in model.modules() if isinstance(m, torch.nn.Linear)]
    trainer.fit(VAETask(model, objective, data), torch.device("cpu"), Run(tmp_path, {}))
    for h in hooks:
        h.remove()
    return trainer, model, data, seen


def test_a_bf16_step_multiplies_in_bf16_and_keeps_densities_loss_and_weights_fp32(cfg_factory, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vae_cli")
    trainer, model, data, seen = fit(cfg_factory, tmp_path, "trainer.precision=bf16")
    assert (True, torch.bfloat16) in seen  # the training step's matmuls ran under autocast, in bf16
    assert all(p.dtype == torch.float32 for p in model.parameters())
    state = [v for s in trainer.opt.state.values() for k, v in s.items() if k != "step"]
    assert state and all(v.dtype == torch.float32 for v in state)  # Adam's moments
    x = model.likelihood.prepare(data.train.images[:8])
    with trainer.autocast():
        t = model.latent_terms(x)
        terms = trainer.step_fn.module(x, trainer.step_fn.step)
    assert all(v.dtype == torch.float32 for v in (t.log_px, t.log_pz, t.log_qz, t.kl_per_dim))
    assert all(terms[k].dtype == torch.float32 for k in ("loss", "elbo", "distortion", "rate"))
    assert any("precision bf16" in r.getMessage() for r in caplog.records)  # the start line says it
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)["precision"] == "bf16"


def test_fp32_runs_no_autocast(cfg_factory, tmp_path):
    _, _, _, seen = fit(cfg_factory, tmp_path, "trainer.precision=fp32")
    assert seen and all(s == (False, torch.float32) for s in seen)


def test_auto_is_bf16_only_on_a_cpu_with_native_bf16(tmp_path):
    yes, no = tmp_path / "yes", tmp_path / "no"
    yes.write_text("processor : 0\nflags : fpu avx512f avx512_bf16 sse\n")
    no.write_text("processor : 0\nflags : fpu avx2 sse\n")
    assert speed.native_bf16_cpu(str(yes)) and not speed.native_bf16_cpu(str(no))
    assert not speed.native_bf16_cpu(str(tmp_path / "absent"))
    assert speed.resolve_precision("bf16", torch.device("cpu")) == ("bf16", "")
    assert speed.resolve_precision("fp32", torch.device("cpu"))[0] == "fp32"
    used, why = speed.resolve_precision("auto", torch.device("cpu"))
    assert used == ("bf16" if speed.native_bf16_cpu() else "fp32") and why.startswith("auto")


def test_bf16_is_refused_off_cpu_and_cuda(cfg_factory):
    from vae_cli.errors import ConfigError
    from vae_cli.validate import check_device

    with pytest.raises(ConfigError, match="trainer.precision=bf16 needs a CUDA device or the CPU"):
        check_device(cfg_factory("trainer.precision=bf16"), torch.device("mps"))


def test_bf16_refuses_the_objective_that_lost_parity_and_auto_keeps_it_fp32(cfg_factory):
    from vae_cli.errors import ConfigError
    from vae_cli.objectives.iwae import IWAE
    from vae_cli.validate import check_device

    with pytest.raises(ConfigError, match="trainer.precision=bf16: objective IWAE did not train to fp32's"):
        check_device(cfg_factory("experiment=iwae_paper_1layer", "trainer.precision=bf16"), torch.device("cpu"))
    assert speed.resolve_precision("auto", torch.device("cpu"), IWAE()) == ("fp32", "auto: objective IWAE keeps fp32")
