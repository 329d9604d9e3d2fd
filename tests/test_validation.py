"""Bad input gets one clear error before any training time is spent, and nothing already written is touched."""
import os
import random
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
import torch
from clitools import TINY, one_error_line, start

from vae_cli.apps.train import run_training
from vae_cli.training.checkpoint import save_checkpoint
from vae_cli.errors import ConfigError, UserError
from vae_cli.validate import as_user_error, check_writable, validate_config

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
       ("schedule.ratio", ["0", "1.5"], ["schedule=cyclical"]), ("schedule.warmup_steps", ["0"], ["schedule=linear"])]
GOOD = {"model": ["mlp", "conv"], "objective": ["elbo", "beta_vae", "free_bits"], "trainer": ["default", "debug"]}


def random_bad_overrides(rng: random.Random) -> tuple[list[str], list[str]]:
    """A few valid group choices plus one or two bad values: (overrides, the bad keys)."""
    picks = rng.sample(BAD, rng.randint(1, 2))
    overrides = [f"{group}={rng.choice(options)}" for group, options in GOOD.items() if rng.random() < 0.5]
    for key, values, needs in picks:
        overrides += [*needs, f"{key}={rng.choice(values)}"]
    return overrides, [key for key, _, _ in picks]


def test_fuzz_random_bad_overrides_each_give_one_clear_config_error():
    rng = random.Random(7)
    with initialize_config_module("vae_cli.configs", version_base="1.3"):
        for _ in range(40):
            overrides, keys = random_bad_overrides(rng)
            with pytest.raises(ConfigError) as err:
                validate_config(compose("train", overrides=overrides))
            message = str(err.value)
            assert "\n" not in message and any(k.split(".")[-1] in message for k in keys), (overrides, message)


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
    (["trainer.batch_size=600"], "trainer.batch_size=600 is larger than the 512 training examples"),
    (["dataset.binarizable=false", "dataset.image_shape=[3,32,32]"], "use likelihood=gaussian"),
    (["model=conv", "dataset.image_shape=[1,10,10]"], "needs image height and width divisible by 4"),
    (["objective.weight.beta=-2"], "objective.weight.beta=-2 must be a finite number >= 0"),
    (["+trainer.momentum=0.9"], "unexpected keyword argument 'momentum'"),
])
def test_bad_values_and_combinations_stop_before_training(tmp_path, cfg_factory, overrides, expected):
    message = user_error(lambda: run_training(cfg_factory("trainer=debug", *overrides), tmp_path))
    assert expected in message
    assert not (tmp_path / "tb").exists()  # nothing trained, nothing logged


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


def test_bad_input_through_the_real_cli_prints_one_line(tmp_path):
    rng = random.Random(11)
    fuzzed = [random_bad_overrides(rng)[0] for _ in range(1)]
    (tmp_path / "taken" / "checkpoints").parent.mkdir()
    (tmp_path / "taken" / "checkpoints").write_text("a file where the checkpoint dir should be")
    cases = [(["latnt_dim=3"], "latnt_dim"), (["model=convv"], "Available options in 'model'"),
             ([f"hydra.run.dir={tmp_path / 'taken'}"], "cannot write checkpoints"),
             *[(f, "vae-train: error: ") for f in fuzzed]]
    procs = [start("trainer=debug", *args, f"hydra.run.dir={tmp_path / str(i)}") if "hydra.run.dir" not in args[0]
             else start("trainer=debug", *args) for i, (args, _) in enumerate(cases)]
    for proc, (args, expected) in zip(procs, cases):
        out, err = proc.communicate(timeout=180)
        assert proc.returncode != 0 and "Traceback" not in err and expected in err, (args, err)
        if expected.startswith(("latnt", "Available")):  # Hydra's own message, with the valid choices
            assert "conv" in err if "model" in expected else "not in struct" in err
        else:
            one_error_line(err)
