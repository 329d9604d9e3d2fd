"""vae-eval's report: the quick default and preset=paper, the same numbers in --help, README and docs; both
collapse criteria named with their thresholds; which way each score is better; the KL-per-dim chart."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import REPO, make_cfg
from vae_cli.apps.eval_report import paper_estimate_s, preset_values, setting_name, setting_text
from vae_cli.apps.evaluate import run_eval
from vae_cli.apps.train import run_training
from vae_cli.evaluation.collapse import verdict

BIN = Path(sys.executable).parent


def eval_cfg(*overrides: str):
    with initialize_config_module("vae_cli.configs", version_base="1.3"):
        return compose("eval", overrides=list(overrides))


def test_quick_is_the_default_and_paper_one_setting_away():
    quick, paper = eval_cfg(), eval_cfg("preset=paper")
    assert (quick.k, quick.num_examples, quick.quality_samples) == (100, 1000, 2000)
    assert (paper.k, paper.num_examples, paper.quality_samples) == (5000, None, 10000)
    assert (setting_name(quick), setting_name(paper)) == ("quick", "paper")
    custom = eval_cfg("preset=paper", "k=7")  # a key typed over a preset wins
    assert custom.k == 7 and custom.num_examples is None and setting_name(custom) == "custom"


def test_help_readme_and_docs_give_the_same_quick_setting():
    quick = preset_values("quick")
    done = subprocess.run([str(BIN / "vae-eval"), "--help"], capture_output=True, text=True, timeout=120)
    pages = {"--help": done.stdout, "README.md": (REPO / "README.md").read_text(),
             "docs/evaluation.md": (REPO / "docs" / "evaluation.md").read_text()}
    for name, text in pages.items():
        assert "preset=paper" in text, name
        assert re.search(rf"k={quick['k']}\b.*{quick['num_examples']}", text), name
    assert f"k={quick['k']} " in done.stdout and f"num_examples={quick['num_examples']} " in done.stdout
    assert "k=500 num_examples=1000" not in "".join(pages.values())


def test_paper_estimate_scales_iw_by_k_and_examples_and_mi_by_examples_squared():
    record = {"k": 100, "num_examples": 1000, "split_size": 10000, "split": "test", "setting": "quick",
              "checkpoint": "run/checkpoints/best.pt",
              "wall_time_s": {"iw_nll_s": 10.0, "collapse_s": 2.0, "quality_s": 5.0}}
    assert paper_estimate_s(record) == pytest.approx(10.0 * 10 * 50 + 2.0 * 100 + 5.0)
    text = setting_text(record)
    assert "vae-eval ckpt=run/checkpoints/best.pt preset=paper" in text and "about 87 min" in text
    assert setting_text({**record, "setting": "paper"}).startswith("paper-grade (preset=paper)")


def test_verdict_says_where_the_two_collapse_criteria_disagree():
    kl = torch.tensor([2.0, 0.004, 0.001])
    au_var = torch.tensor([1.0, 0.02, 0.0])  # dim 1: its mean varies (active) yet it carries < 0.01 nats
    text = verdict([1, 2], kl, au_var, 0.01)
    assert text == ("partial collapse: 2 of 3 dims have KL < 0.01 nats: [1, 2]; 1 of them still counts as active "
                    "units (their means vary across x): [1]")
    assert verdict([], kl, au_var, 0.001).startswith("no collapsed dims: none of the 3")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    run = tmp_path_factory.mktemp("eval_report_run")
    run_training(make_cfg("trainer=debug"), run)
    out = run / "eval"
    record = run_eval(eval_cfg(f"ckpt={run}", f"out={out}", "k=4", "quality_samples=128", "progress=false"))
    return record, out


def test_report_names_each_criterion_and_the_better_direction(evaluated):
    record, out = evaluated
    c, d = record["collapse"], record["collapse"]["num_dims"]
    report = (out / "report.txt").read_text()
    lines = {line.split("  ")[0]: line for line in report.splitlines()}
    assert lines["ELBO"].endswith("higher is better") and lines["IW-NLL (k=4)"].endswith("lower is better")
    assert lines["classifier FD"].endswith("lower is better") and "higher" in lines["precision / recall"]
    assert f"{c['active_units']} of {d}  (Var_x E[z_j|x] > 0.01)" in lines["active units"]
    assert f"{d - len(c['collapsed_dims'])} of {d}  (mean KL per dim, nats)" in lines["dims with KL >= 0.01"]
    assert lines["collapse"].endswith(c["verdict"])
    assert "custom: k=4 on 128 of 128 test images; paper-grade: vae-eval ckpt=" in lines["setting"]
    q = json.loads((out / "metrics.json").read_text())["sample_quality"]
    assert all(0 <= q[key] <= 1 for key in ("precision", "recall", "coverage")) and q["density"] >= 0
    assert q["nearest_k"] == 5 and record["setting"] == "custom"


def test_kl_per_dim_chart_is_written_and_logged(evaluated):
    pytest.importorskip("matplotlib")
    from PIL import Image

    _, out = evaluated
    chart = Image.open(out / "kl_per_dim.png")
    assert chart.size[0] >= 600 and chart.size[1] >= 400
    tags = EventAccumulator(str(out)).Reload().Tags()["images"]
    assert "test/kl_per_dim" in tags


def test_preset_files_are_package_data():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "vae_cli.eval_configs" in project["packages"]
    assert project["package-data"]["vae_cli.eval_configs"] == ["*/*.yaml"]
    assert {p.stem for p in (REPO / "vae_cli" / "eval_configs" / "preset").glob("*.yaml")} == {"quick", "paper"}
