"""The training step captured as one CUDA graph (trainer.cuda_graph): equal to eager, resumable, and every
family either captures or says in one log line why not. CUDA only: skipped without a GPU."""
import logging
import signal
from pathlib import Path

import pytest
import torch
from clitools import TINY, load, run, start, wait_for

from vae_cli.build import build_data, build_model, build_objective, build_trainer, set_num_classes, set_run_length
from vae_cli.training.step import graph_obstacle
from vae_cli.training.trainer import Run
from vae_cli.training.vae_task import VAETask
from conftest import make_cfg

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = [o if o != "device=cpu" else "device=cuda" for o in TINY]


def fit(*overrides, device: str = "cuda"):
    """trainer=debug on CUDA through the real Trainer -> (trainer, model, final val). (device: a CPU run of the
    same set-up, to check it off a GPU.)"""
    cfg = make_cfg("trainer=debug", f"device={device}", *overrides)
    torch.manual_seed(cfg.seed)
    data = build_data(cfg)
    set_run_length(cfg, len(data.train))
    set_num_classes(cfg, data.num_classes)  # model=cvae
    model, objective = build_model(cfg, data.image_shape), build_objective(cfg)
    trainer = build_trainer(cfg)
    import tempfile

    val = trainer.fit(VAETask(model, objective, data), torch.device(device), Run(Path(tempfile.mkdtemp()), {}))
    return trainer, model, val


@pytest.mark.parametrize("extra", [[], ["objective=kl_annealing", "schedule.warmup_steps=10",
                                        "lr_schedule=cosine", "trainer.grad_clip=1.0"]])
def test_captured_steps_equal_eager_steps(extra):
    n = ["max_steps=25", "trainer.eval_every=25", "trainer.log_every=5", *extra]
    graph, g_model, g_val = fit(*n, "trainer.cuda_graph=true")
    eager, e_model, e_val = fit(*n, "trainer.cuda_graph=false")
    assert type(graph.run_step).__name__ == "GraphedStep" and type(eager.run_step).__name__ == "StepFunction"
    for a, b in zip(g_model.parameters(), e_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert int(graph.step_fn.step) == int(eager.step_fn.step) == 25
    torch.testing.assert_close(graph.meter.sums, eager.meter.sums, rtol=1e-4, atol=1e-4)
    assert g_val["elbo"] == pytest.approx(e_val["elbo"], rel=1e-4)
    print(f"val elbo after 25 steps: captured {g_val['elbo']:.5f}, eager {e_val['elbo']:.5f}")


def test_sigkill_then_resume_equals_uninterrupted_on_cuda(tmp_path):
    args = [*CUDA, "max_steps=200", "trainer.eval_every=40", "trainer.log_every=10"]
    ref = tmp_path / "ref"
    assert run(*args, f"hydra.run.dir={ref}").returncode == 0
    cut = tmp_path / "cut"
    proc = start(*args, f"hydra.run.dir={cut}")
    wait_for("checkpoints/step_*.pt", cut, proc)
    proc.kill()
    assert proc.wait() == -signal.SIGKILL
    done = run(f"resume={cut}")
    assert done.returncode == 0, done.stderr
    got, want = load(cut / "checkpoints" / "last.pt"), load(ref / "checkpoints" / "last.pt")
    assert got["step"] == want["step"] == 200 and int(got["step_tensor"]) == 200
    for k in want["model"]:
        torch.testing.assert_close(got["model"][k], want["model"][k], rtol=1e-5, atol=1e-6)
    assert got["val"]["elbo"] == pytest.approx(want["val"]["elbo"], rel=1e-5)


FAMILIES = [[], ["model=conv"], ["model=cvae"], ["model=cvae", "model.condition.embed_dim=8"], ["model=gumbel"],
            ["model=gumbel", "model.hard=true", "objective.temperature.rate=0"], ["model=hierarchical"],
            ["model=ladder", "model.kl_balance_steps=6"], ["model=vqvae"], ["model=vqvae", "posterior.ema=true"],
            ["objective=iwae"], ["posterior=iaf"], ["posterior=mixture"], ["prior=vamp"], ["trainer.nonfinite=skip"],
            ["trainer.precision=bf16"]]


@pytest.mark.parametrize("overrides", FAMILIES, ids=lambda o: " ".join(o) or "default")
def test_every_family_captures_or_says_why(overrides, caplog):
    """tests/test_capture_safety.py found nothing a capture forbids in these steps on the CPU, so each must
    capture, unless graph_obstacle declares why not; what it cannot see (a sync inside one CUDA kernel) fails here."""
    caplog.set_level(logging.INFO, logger="vae_cli")
    trainer, _, val = fit("max_steps=12", "trainer.eval_every=12", *overrides)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cuda_graph:")]
    assert len(lines) == 1, lines
    print(f"{' '.join(overrides) or 'default'}: {lines[0]}")
    why = graph_obstacle(torch.device("cuda"), trainer.speed.compile, False)
    assert lines[0] == (f"cuda_graph: eager steps: {why}" if why else
                        "cuda_graph: the training step is captured as one CUDA graph and replayed")
    assert all(v == v for v in val.values() if isinstance(v, float))  # no NaN
