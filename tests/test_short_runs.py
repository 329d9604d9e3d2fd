"""A recipe the run cuts short says so at start: a KL warm-up longer than the run, a paper lr schedule squeezed
into a short budget; annealing against none is one sweep."""

import pytest
import torch
from clitools import TINY, run, scalars

from vae_cli.schedules import Constant, IWAEPaperLR, LinearWarmup, Weight


def test_a_warm_up_longer_than_the_run_names_the_beta_it_ends_at():
    assert "beta ends at 0.30, not 1;" in Weight(1.0, LinearWarmup(5000)).start_note(1500)  # 1499 / 5000
    assert "beta ends at 1.20, not 4;" in Weight(4.0, LinearWarmup(5000)).start_note(1500)
    assert Weight(1.0, LinearWarmup(750)).start_note(1500) is None
    assert Weight(1.0, Constant()).start_note(10) is None
    assert "schedule.warmup_steps=750 is unused" in Weight(1.0, Constant(warmup_steps=750)).start_note(10)


def test_the_paper_lr_schedule_squeezed_into_a_short_run_says_so_and_offers_cosine():
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-3)
    short = IWAEPaperLR(opt, total_steps=3000)  # batch 20 over 50,000 images: 1.2 passes
    note = short.budget_note(3000 * 20 / 50000)
    assert "for 3280 passes" in note and "makes 1.2," in note
    assert "96% of its steps run at lr <= 0.00019" in note and "lr_schedule=cosine" in note
    assert sum(short.value(s) <= 0.2 for s in range(3000)) / 3000 == pytest.approx(0.96, abs=0.005)
    assert IWAEPaperLR(opt, total_steps=10**6).budget_note(400.0) is None  # over a tenth of the design


@pytest.mark.slow
def test_annealing_against_none_is_one_sweep_and_each_job_says_what_its_warm_up_does(tmp_path):
    done = run("-m", *TINY, "max_steps=4", "trainer.eval_every=4", "trainer.log_every=1",
               "objective=elbo,kl_annealing", "schedule.warmup_steps=10", f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.stderr
    elbo, annealed = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert "schedule.warmup_steps=10 is unused" in (elbo / "train.log").read_text()
    assert "beta ends at 0.30, not 1;" in (annealed / "train.log").read_text()  # 3 / 10 at the last update
    assert [v for _, v in scalars(elbo)["train/beta"]] == [1.0] * 4
    assert [v for _, v in scalars(annealed)["train/beta"]] == pytest.approx([0.0, 0.1, 0.2, 0.3])
