"""trainer.nonfinite=raise|skip with NaNs forced by the test-only objective faults.NonFiniteAt."""
import math

import pytest
import torch
from clitools import TINY, load, one_error_line, run, scalars

from vae_cli.apps.train import run_training
from vae_cli.errors import NonFiniteError
from vae_cli.training.nonfinite import NonFiniteGuard

NAN = ["objective._target_=faults.NonFiniteAt", "trainer.log_every=5"]


def adam_after(grads: list[torch.Tensor | None]) -> tuple[torch.nn.Linear, torch.optim.Adam]:
    """A seeded Linear(3, 2) and its Adam after one guarded step per gradient (None: a step with NaN grads)."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2)
    opt, guard = torch.optim.Adam(layer.parameters(), lr=0.1), NonFiniteGuard("skip", 5, torch.device("cpu"))
    for g in grads:
        for i, p in enumerate(layer.parameters()):
            p.grad = torch.full_like(p, math.nan) if g is None else g[: p.numel()].view_as(p) * (i + 1)
        ok = torch.stack([torch.isfinite(p.grad).all() for p in layer.parameters()]).all()
        guard.step(opt, ok)
    return layer, opt, guard


def test_a_skipped_step_leaves_parameters_and_adam_state_unchanged():
    g1, g2 = torch.linspace(-1, 1, 6), torch.linspace(2, -3, 6)
    skipped, opt_s, guard = adam_after([None, g1, None, None, g2])  # bad first step too: Adam's state not yet made
    clean, opt_c, _ = adam_after([g1, g2])
    for a, b in zip(skipped.parameters(), clean.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(opt_s.state.values(), opt_c.state.values()):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # exp_avg, exp_avg_sq, step
    assert int(guard.skipped) == 3 and int(guard.longest) == 2 and int(guard.consecutive) == 0


def test_skip_drops_bad_updates_counts_them_and_logs_train_skipped_steps(tmp_path, cfg_factory):
    cfg = cfg_factory(*TINY, *NAN, "+objective.nan_steps=[3,4]", "trainer.nonfinite=skip", "max_steps=10",
                      "trainer.eval_every=10")
    val = run_training(cfg, tmp_path)
    assert math.isfinite(val["elbo"])
    assert int(load(tmp_path / "checkpoints" / "last.pt")["nonfinite"]["skipped"]) == 2
    tb = scalars(tmp_path)
    assert tb["train/skipped_steps"] == [(5, 2.0), (10, 2.0)]
    assert all(math.isfinite(v) for _, v in tb["train/loss"])  # means over the finite steps only


def test_skip_stops_after_max_skips_consecutive_bad_steps(tmp_path, cfg_factory):
    cfg = cfg_factory(*TINY, *NAN, f"+objective.nan_steps={list(range(2, 30))}", "trainer.nonfinite=skip",
                      "trainer.max_skips=3")
    with pytest.raises(NonFiniteError, match=r"(\d+) consecutive non-finite steps were skipped \(trainer.max_skips=3\)"
                       r"; the first was step 2: .*distortion=nan"):
        run_training(cfg, tmp_path)
    assert not (tmp_path / "checkpoints" / "last.pt").exists()  # stopped at step 5, before the first checkpoint


def test_raise_names_the_step_and_the_terms_through_the_cli(tmp_path):
    done = run(*TINY, *NAN, "+objective.nan_steps=[7]", "+objective.term=rate", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 2
    line = one_error_line(done.stderr)
    assert "non-finite value at step 7: loss=nan, rate=nan, grad_norm=nan" in line, line
