"""TensorBoard layout: the headline scalars and HParams, runs named by their overrides."""
from pathlib import Path

from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from clitools import cli, only_run_dir, scalars, TINY


def experiment_infos(run: Path) -> list:
    (path,) = run.glob("events.out.tfevents.*")
    for event in EventFileLoader(str(path)).Load():
        for value in event.summary.value:
            if value.tag == "_hparams_/experiment":
                return list(HParamsPluginData.FromString(value.metadata.plugin_data.content).experiment.hparam_infos)
    return []


def test_tensorboard_opens_on_the_headline_and_names_runs_by_overrides(tmp_path):
    proc = cli("vae-train", *TINY, "objective=beta_vae", "trainer.eval_every=null", "max_steps=64", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = only_run_dir(tmp_path / "outputs")
    name = run.name.split("_", 1)[1]  # <time>_<the overrides, sorted, cut at 150 characters>
    assert name.startswith("dataset.image_shape=[1,8,8],device=cpu,latent_dim=4,max_steps=64,") and len(name) == 150
    assert "objective=beta_vae" in name
    tags = scalars(run)
    sections = sorted({t.split("/")[0] for t in tags} | {"reconstructions", "samples"})
    assert sections[0] == "headline"
    assert {"headline/elbo_val", "headline/elbo_train", "headline/rate_val", "headline/distortion_val",
            "headline/bits_per_dim_val"} <= set(tags)
    assert [s for s, _ in tags["val/elbo"]] == [32, 64]  # once per epoch (32 batches of 16); no step 0
    assert [s for s, _ in tags["val_at_step_0/elbo"]] == [0]
    assert tags["headline/elbo_val"] == tags["val/elbo"]
    infos = experiment_infos(run)  # TensorBoard shows the `differs` ones first (5 without a click)
    shown = {i.name for i in infos if i.differs}
    assert {"objective", "latent_dim", "batch_size", "trainer", "model.encoder.hidden_sizes"} <= shown
    assert {"model", "prior", "seed", "lr"}.isdisjoint(shown) and {"model", "prior"} <= {i.name for i in infos}
