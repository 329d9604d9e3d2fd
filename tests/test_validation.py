"""Bad input gets one clear error before any training time is spent, and nothing already written is touched."""
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
import torch
import clitools
from clitools import TINY, one_error_line, run, start

from vae_cli.apps.train import run_training
from vae_cli.training.checkpoint import save_checkpoint
from vae_cli.errors import ConfigError, UserError
from vae_cli.plan import make_plan
from vae_cli.validate import as_user_error, check_writable

# key, bad values (as typed on the command line), overrides the key needs to exist
BAD = [("latent_dim", ["0", "-3", "abc", "1.5", "[1,2]", "true"], []),
       ("beta", ["-1", "-0.5", "abc", "nan", "inf"], []),
       ("objective.free_bits", ["-0.1", "abc"], []), ("objective.num_samples", ["0", "2.5"], []),
       ("trainer.lr", ["0", "-1e-3", "abc", "null"], []), ("trainer.batch_size", ["0", "-5", "abc", "1.5"], []),
       ("optimizer.weight_decay", ["-1"], []), ("trainer.grad_clip", ["0", "-1", "abc"], []),
       ("trainer.log_every", ["0"], []), ("trainer.eval_every", ["-2"], []), ("trainer.precision", ["fp8"], []),
       ("trainer.nonfinite", ["ignore", "1"], []), ("trainer.max_skips", ["0"], []),
       ("trainer.keep_last", ["-1", "abc"], []), ("max_steps", ["0", "-1", "abc", "2.5"], []),
       ("seed", ["abc", "1.5"], []), ("resume", ["''", "3"], []),
       ("dataset.image_shape", ["[1,28]", "[0,8,8]", "abc"], ["dataset=fake"]),
       ("dataset.num_train", ["0"], ["dataset=fake"]), ("likelihood.sigma", ["0", "-1"], ["likelihood=gaussian"]),
       ("schedule.ratio", ["0", "1.5"], ["schedule=cyclical"]), ("schedule.warmup_steps", ["0"], ["schedule=linear"]),
       # each of these would otherwise train (or crash with a traceback)
       ("seed", ["99999999999999999999999", "-99999999999999999999999"], []), ("+lr", ["10"], []),
       ("posterior.min_scale", ["-1"], []), ("model.encoder.hidden_sizes", ["[0]", "[]", "[32,-1]"], ["model=mlp"]),
       ("model.decoder.hidden_sizes", ["[0]"], ["model=mlp"]), ("trainer.compile_mode", ["bogus"], []),
       ("device", ["meta", "bogus"], []), ("schedule.n_cycles", ["100", "16"], ["schedule=cyclical", "max_steps=30"])]
GOOD = {"model": ["mlp", "conv"], "objective": ["elbo", "beta_vae", "free_bits"], "trainer": ["default", "debug"]}


def random_bad_overrides(rng: random.Random) -> tuple[list[str], list[str]]:
    """A few valid group choices plus one or two bad values: (overrides, the bad keys)."""
    picks = rng.sample(BAD, rng.randint(1, 2))
    needed = {n for _, _, needs in picks for n in needs}
    overrides = [f"{group}={rng.choice(options)}" for group, options in GOOD.items()
                 if rng.random() < 0.5 and not any(n.startswith(f"{group}=") for n in needed)]
    overrides += sorted(needed)
    for key, values, _ in picks:
        overrides.append(f"{key}={rng.choice(values)}")
    return overrides, [key for key, _, _ in picks]


def preflight(cfg, run_dir) -> None:
    """What vae-train checks before any data loads: its plan (validate.py's rules, the device, the data-free
    parts, whose constructors check their arguments)."""
    make_plan(cfg, run_dir)


def test_fuzz_random_bad_overrides_each_give_one_clear_config_error(tmp_path):
    rng = random.Random(7)
    with initialize_config_module("vae_cli.configs", version_base="1.3"):
        for _ in range(60):
            overrides, keys = random_bad_overrides(rng)
            with pytest.raises(ConfigError) as err:
                preflight(compose("train", overrides=["max_steps=10", *overrides]), tmp_path)
            message = str(err.value)
            assert "\n" not in message and any(k.split(".")[-1].lstrip("+") in message for k in keys), \
                (overrides, message)


def user_error(fn) -> str:
    """Run fn; it must fail with an error a user caused, reported as one line."""
    try:
        fn()
    except Exception as e:
        user = as_user_error(e)
        assert user is not None, f"not a user error: {e!r}"
        assert "\n" not in str(user)
        return str(user)
    raise AssertionError("no error")


@pytest.mark.parametrize("overrides, expected", [
    (["trainer.batch_size=600"], "trainer.batch_size=600 is larger than the 512 training examples of fake;"),
    (["dataset.binarizable=false", "dataset.image_shape=[3,32,32]"],
     "use likelihood=discretized_logistic or likelihood=gaussian"),
    (["model=conv", "dataset.image_shape=[1,30,30]"], "model=conv cannot fit 30x30 images"),
    (["objective.weight.beta=-2"], "objective.weight.beta=-2 must be a finite number >= 0"),
    (["+trainer.momentum=0.9"], "trainer.momentum: Trainer takes no key 'momentum' (it takes batch_size,"),
])
def test_bad_values_and_combinations_stop_before_training(tmp_path, cfg_factory, overrides, expected):
    message = user_error(lambda: run_training(cfg_factory("trainer=debug", *overrides), tmp_path))
    assert expected in message
    assert not list(tmp_path.rglob("events.out.tfevents.*"))  # nothing trained, nothing logged


def test_missing_data_offline(tmp_path, cfg_factory):
    cfg = cfg_factory("dataset=fashion_mnist", f"data_dir={tmp_path}", "dataset.download=false")
    message = user_error(lambda: run_training(cfg, tmp_path / "run"))
    assert "FashionMNIST is not in" in message and "download=false" in message and "VAE_DATA_DIR" in message


def snapshot(run_dir: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_bad_checkpoints_and_incompatible_configs_leave_the_run_untouched(tmp_path, cfg_factory):
    run_training(cfg_factory(*TINY, "max_steps=10", "trainer.eval_every=10"), tmp_path)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    save_checkpoint(tmp_path / "old.pt", ckpt)
    torch.save({**ckpt, "version": "0.0.1"}, tmp_path / "old.pt")  # as an older vae-cli would have written it
    cut = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(cut[: len(cut) // 3])
    before = snapshot(tmp_path)
    cases = {"resume=true latent_dim=8": "trained with another config (latent_dim: 4 -> 8",
             f"resume={tmp_path / 'old.pt'}": "was written by vae-cli 0.0.1; this is",
             f"resume={tmp_path / 'cut.pt'}": "is corrupt or not a vae-cli checkpoint",
             f"resume={tmp_path / 'nothing'}": "no readable checkpoint"}
    for overrides, expected in cases.items():
        cfg = cfg_factory(*TINY, "max_steps=20", *overrides.split())
        assert expected in user_error(lambda: run_training(cfg, tmp_path)), overrides
    assert snapshot(tmp_path) == before


def test_unwritable_checkpoint_dir_is_refused_at_start(tmp_path):
    target = tmp_path / "checkpoints"
    if os.geteuid() == 0:  # root ignores permissions: a file where the directory should be
        target.write_text("not a directory")
    else:
        tmp_path.chmod(0o555)
    with pytest.raises(UserError, match="cannot write checkpoints to"):
        check_writable(target)


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "config": {}})
    before = path.read_bytes()
    (tmp_path / "last.pt.tmp").symlink_to("/dev/full")  # every write there fails with ENOSPC
    with pytest.raises(UserError, match=r"could not write checkpoint .*last.pt: No space left on device; "
                                        r"the previous last.pt is intact"):
        save_checkpoint(path, {"model": {"w": torch.zeros(1000)}, "config": {}})
    assert path.read_bytes() == before and not (tmp_path / "last.pt.tmp").exists()


@pytest.mark.slow
def test_bad_input_through_the_real_cli_prints_one_line(tmp_path):
    rng = random.Random(11)
    fuzzed = [random_bad_overrides(rng)[0] for _ in range(1)]
    (tmp_path / "taken" / "checkpoints").parent.mkdir()
    (tmp_path / "taken" / "checkpoints").write_text("a file where the checkpoint dir should be")
    cases = [(["latnt_dim=3"], "did you mean 'latent_dim'?"), (["model=convv"], "closest first: conv,"),
             ([f"hydra.run.dir={tmp_path / 'taken'}"], "cannot write checkpoints"),
             *[(f, "vae-train: error: ") for f in fuzzed]]
    procs = [start("trainer=debug", *args, f"hydra.run.dir={tmp_path / str(i)}") if "hydra.run.dir" not in args[0]
             else start("trainer=debug", *args) for i, (args, _) in enumerate(cases)]
    for proc, (args, expected) in zip(procs, cases):
        out, err = proc.communicate(timeout=180)
        assert proc.returncode != 0 and "Traceback" not in err and expected in err, (args, err)
        one_error_line(err)  # typos too: one line with the closest names (vae_cli/overrides.py)


@pytest.mark.parametrize("overrides, expected", [
    (["seed=99999999999999999999999"], "seed=99999999999999999999999 must be an integer in"),
    (["trainer.compile_mode=bogus"], "trainer.compile_mode='bogus'"), (["device=meta"], "device=meta cannot train"),
    (["+lr=10"], "did you mean trainer.lr"), (["posterior.min_scale=-1"], "posterior.min_scale=-1 must be"),
    (["model.encoder.hidden_sizes=[0]"], "model.encoder.hidden_sizes=[0] must be"),
    (["schedule=cyclical", "schedule.n_cycles=100"], "beta would be 0 at every step"),
])
@pytest.mark.slow
def test_nonsense_and_crashes_get_one_line_before_training(tmp_path, overrides, expected):
    """Cases 10 and 12: each of these used to crash with a traceback or train on; now one line, exit 2."""
    keys = {o.split("=")[0] for o in overrides}
    args = [a for a in TINY if a.split("=")[0] not in keys]
    done = run(*args, "max_steps=30", *overrides, f"hydra.run.dir={tmp_path / 'R'}")
    assert done.returncode == 2 and expected in one_error_line(done.stderr), done.stderr
    assert not any(p.is_file() for p in (tmp_path / "R").rglob("*"))  # nothing trained, nothing written


@pytest.mark.parametrize("overrides, expected", [
    (["experiment=vamp_1layer", "model=conv"], "model.lower_dims: VAE takes no key 'lower_dims'"),
    (["experiment=iwae_paper_2layer", "model=gumbel"], "drop model=gumbel, or leave the experiment out"),
    (["+model.encoder.depth=3"], "model.encoder.depth: MLPEncoder takes no key 'depth' (it takes activation,"),
])
@pytest.mark.slow
def test_a_key_the_part_does_not_take_is_one_line_before_data_loads(tmp_path, overrides, expected):
    """A preset's key left on another option (experiment=vamp_1layer model=conv was the constructor's TypeError
    about 'hidden_sizes' on a ConvEncoder, after the data loaded): absent data shows the check comes first."""
    done = run(*overrides, "dataset=fashion_mnist", "dataset.download=false", f"data_dir={tmp_path / 'none'}",
               "max_steps=1", "device=cpu", f"hydra.run.dir={tmp_path / 'R'}")
    assert done.returncode == 2 and expected in one_error_line(done.stderr), done.stderr


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    from conftest import make_cfg

    run_dir = tmp_path_factory.mktemp("tiny")
    run_training(make_cfg(*TINY, "max_steps=10", "trainer.eval_every=10"), run_dir)
    return run_dir / "checkpoints" / "last.pt"


@pytest.mark.slow
def test_vae_eval_checks_out_first_and_metrics_json_is_always_valid(tmp_path, tiny_ckpt):
    (tmp_path / "file").write_text("in the way")
    refused = eval_cli(f"ckpt={tiny_ckpt}", f"out={tmp_path / 'file'}")
    assert refused.returncode == 2 and refused.stderr.strip() == \
        f"vae-eval: error: out={tmp_path / 'file'} is a file; give a directory for metrics.json (it is created if missing)"
    one = eval_cli(f"ckpt={tiny_ckpt}", "num_examples=1", "k=4", "quality=false", f"out={tmp_path / 'one'}")
    assert one.returncode == 0, one.stderr
    record = json.loads((tmp_path / "one" / "metrics.json").read_text(), parse_constant=_no_nan)  # strict JSON
    assert record["iw_nll_stderr"] is None and "single example" in record["undefined"]["iw_nll_stderr"]
    # a variance over one example is undefined: no "active units 0" (it read NaN > 0.01 as inactive), no "± nan"
    assert record["collapse"]["active_units"] is None
    report = (tmp_path / "one" / "report.txt").read_text()  # the table --help promises, as printed
    assert report.strip() in one.stdout and "nan" not in report and "± n/a nats" in report
    assert re.search(r"^active units +n/a  \(Var_x E\[z_j\|x\] > 0\.01\)", report, re.M), report


def _no_nan(name):
    raise AssertionError(f"metrics.json holds {name}")


def eval_cli(*args: str):
    return subprocess.run([sys.executable, "-c", "from vae_cli.cli import eval_main; eval_main()", *args],
                          capture_output=True, text=True, env=clitools.env(), timeout=180)


def test_a_corrupt_or_unwritable_classifier_cache_is_retrained_not_fatal(tmp_path, caplog):
    from conftest import make_cfg
    from vae_cli.build import build_data
    from vae_cli.evaluation.quality import cache_path, load_or_train

    data = build_data(make_cfg(*TINY))
    path = cache_path(data, str(tmp_path))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 truncated")
    assert load_or_train(data, torch.device("cpu"), str(tmp_path)) is not None
    assert "does not load" in caplog.text
    torch.load(path, weights_only=True)  # rewritten whole
    assert not list(path.parent.glob("*.tmp"))
    assert load_or_train(data, torch.device("cpu"), "/dev/null/cache") is not None  # HOME=/dev/null: no cache
    assert "could not cache the sample-quality classifier" in caplog.text


@pytest.mark.parametrize("arg, dotted", [("lr=1e-4", "trainer.lr"), ("batch_size=64", "trainer.batch_size"),
                                         ("warmup_steps=10", "schedule.warmup_steps' or 'lr_schedule.warmup_steps")])
def test_a_bare_key_that_is_a_nested_leaf_suggests_its_dotted_name(arg, dotted):
    from vae_cli.command_line import CommandLine
    from vae_cli.overrides import check_overrides

    line = CommandLine.parse(["vae-train", arg, *(["lr_schedule=cosine"] if "warmup" in arg else [])])
    with pytest.raises(UserError) as e:
        check_overrides("train", line)
    assert str(e.value).startswith(f"unknown key '{arg.split('=')[0]}' — did you mean '{dotted}'?")
