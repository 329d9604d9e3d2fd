"""The command line read once with Hydra's own parser: values, sweeps, flags, and resume=PATH's expansion."""
import pytest
from omegaconf import OmegaConf

from vae_cli.command_line import CommandLine, typed_dir, with_resumed_run
from vae_cli.errors import UserError


def line(*args: str) -> CommandLine:
    return CommandLine.parse(["vae-train", *args])


def test_values_are_hydras_typed_values_the_last_one_wins_and_sweeps_are_left_to_each_job():
    cl = line("-m", "trainer.threads=2", "+trainer.threads=3", "beta=1,4", "resume=null", "hydra.run.dir='a b'")
    assert cl.value("trainer.threads") == 3 and cl.value("beta") is None and cl.typed("beta")
    assert cl.value("resume") is None and cl.typed("resume") and not cl.typed("seed")
    assert cl.multirun and not cl.tree_flags and cl.value("hydra.run.dir") == "a b"
    assert line("--help").tree_flags and line("--cfg", "job").overrides == ()
    assert line("beta=[1,").overrides is None  # Hydra's grammar refuses it; Hydra says so when it composes


def test_typed_dir_is_the_sweep_dir_under_multirun():
    assert typed_dir(line("hydra.run.dir=x", "hydra.sweep.dir=y")) == ("hydra.run.dir", "x")
    assert typed_dir(line("-m", "hydra.run.dir=x", "hydra.sweep.dir=y")) == ("hydra.sweep.dir", "y")
    assert typed_dir(line("beta=2")) == ("hydra.run.dir", None)


def test_resume_path_replays_the_runs_own_overrides_then_the_new_ones_in_its_dir(tmp_path):
    run = tmp_path / "it's a run"  # a quote and a space survive the round trip through Hydra's grammar
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    OmegaConf.save(OmegaConf.create(["latent_dim=8", "beta=2", "resume=false", "model=conv"]),
                   run / ".hydra" / "overrides.yaml")
    for given in (run, run / "checkpoints", run / "checkpoints" / "last.pt"):
        cl = with_resumed_run(line("beta=3", f"resume={given}".replace("'", "\\'").replace("=", "='", 1) + "'"))
        assert cl.args[:3] == ("latent_dim=8", "model=conv", "beta=3"), cl.args
        assert cl.value("resume") == str(given) and cl.value("hydra.run.dir") == str(run)
        assert cl.value("beta") == 3 and cl.value("latent_dim") == 8


def test_resume_takes_a_run_dir_named_by_its_overrides_as_typed_unquoted(tmp_path):
    run = tmp_path / "05-00-30_beta=4,dataset.image_shape=[1,8,8]"  # Hydra's grammar cannot read it unquoted
    (run / "checkpoints").mkdir(parents=True)
    cl = with_resumed_run(line(f"resume={run}", "max_steps=20"))
    assert cl.overrides is not None and cl.args[0] == "max_steps=20"
    assert cl.value("resume") == str(run) and cl.value("hydra.run.dir") == str(run)


def test_resume_flags_and_bad_paths():
    for plain in ("resume=true", "resume=false", "resume=null", "resume=", "beta=2"):
        assert with_resumed_run(line(plain)) == line(plain)
    with pytest.raises(UserError, match="resume=/nowhere: no such run dir or checkpoint file"):
        with_resumed_run(line("resume=/nowhere"))
    with pytest.raises(UserError, match="resume=PATH resumes one run"):
        with_resumed_run(line("-m", "resume=/nowhere"))
