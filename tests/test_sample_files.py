"""vae-sample names each picture after the knobs that differ from their defaults, so a run with other knobs
keeps the earlier run's file (and TensorBoard tag); the same knobs draw the same picture under the same name."""
import pytest
from hydra import compose, initialize_config_module
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import make_cfg
from vae_cli.apps.sample import changed_knobs, knob_text, run_sample
from vae_cli.apps.train import run_training


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    run = tmp_path_factory.mktemp("named_run")
    run_training(make_cfg("trainer=debug", "max_steps=4", "trainer.eval_every=4"), run)
    return run / "checkpoints" / "last.pt"


def sample_cfg(*overrides: str):
    with initialize_config_module("vae_cli.configs", version_base="1.3"):
        return compose("sample", overrides=list(overrides))


def test_each_knob_setting_keeps_its_own_file(ckpt, tmp_path):
    runs = [(), ("mode.temperature=0.8",), ("seed=3",), ("mode.temperature=0.8", "mode.sample_pixels=true")]
    paths = [run_sample(sample_cfg(f"ckpt={ckpt}", f"out={tmp_path}", "mode=prior", *o)) for o in runs]
    names = [sorted(p.name for p in got.values()) for got in paths]
    assert names == [["prior.png"], ["prior_temperature-0.8.png"], ["prior_seed-3.png"],
                     ["prior_pixels_temperature-0.8_sample_pixels-true.png",
                      "prior_temperature-0.8_sample_pixels-true.png"]]
    files = sorted(tmp_path.glob("*.png"))
    assert len(files) == 5  # nothing was overwritten
    pictures = {f.name: Image.open(f).tobytes() for f in files}
    assert pictures["prior.png"] != pictures["prior_temperature-0.8.png"] != pictures["prior_seed-3.png"]
    again = run_sample(sample_cfg(f"ckpt={ckpt}", f"out={tmp_path}", "mode=prior"))["prior"]
    assert again.name == "prior.png" and Image.open(again).tobytes() == pictures["prior.png"]  # same knobs
    tags = set(EventAccumulator(str(tmp_path)).Reload().Tags()["images"])
    assert {"vae-sample/prior", "vae-sample/prior_temperature-0.8", "vae-sample/prior_seed-3"} <= tags


def test_knob_text_is_a_safe_file_name_part():
    cfg = sample_cfg("ckpt=x", "mode=arithmetic", "mode.scales=[0,1.5]", "mode.a=3")
    assert changed_knobs(cfg, "arithmetic") == "_a-3_scales-0,1.5"
    assert changed_knobs(sample_cfg("ckpt=x", "mode=traverse", "mode.dims=null"), "traverse") == "_dims-null"
    assert (knob_text(True), knob_text("../a b/c"), knob_text(-0.5)) == ("true", "..abc", "-0.5")
    assert changed_knobs(sample_cfg("ckpt=x", "mode=prior"), "not-a-packaged-mode") == ""
