"""Misspelled keys and group options: one line with the closest names, before Hydra composes."""
import pytest

from clitools import cli, one_line
from conftest import REPO


def test_misspelled_key_gets_one_line_suggestion_and_the_groups(tmp_path):
    line = one_line(cli("vae-train", "modle=conv", cwd=tmp_path), "vae-train")
    groups = sorted(p.name for p in (REPO / "configs").iterdir() if p.is_dir() and p.name not in ("hydra", "__pycache__"))
    assert f"unknown key 'modle' — did you mean 'model'? (groups: {', '.join(groups)}; keys: beta," in line
    line = one_line(cli("vae-train", "latnet_dim=4", cwd=tmp_path), "vae-train")
    assert "did you mean 'latent_dim'?" in line
    assert not (tmp_path / "outputs").exists()  # refused before Hydra made a run dir


def test_misspelled_group_option_lists_the_valid_ones_closest_first(tmp_path):
    line = one_line(cli("vae-train", "model=cnn", cwd=tmp_path), "vae-train")
    options = line.split("closest first: ")[1].split(", ")
    assert sorted(options) == sorted(p.stem for p in (REPO / "configs" / "model").glob("*.yaml"))
    assert options[0] == "conv"
    line = one_line(cli("vae-train", "-m", "dataset=mnist,mnsit", cwd=tmp_path), "vae-train")
    assert "unknown option 'mnsit' for group 'dataset'" in line and line.split(": ")[-1].startswith("mnist,")


@pytest.mark.slow
def test_misspelled_nested_key_is_looked_up_in_the_config_each_job_composes(tmp_path):
    line = one_line(cli("vae-train", "trainer.lrr=1", cwd=tmp_path), "vae-train")
    assert line.startswith("vae-train: error: unknown key 'trainer.lrr' — did you mean 'trainer.lr'? (keys of "
                           "trainer: max_steps, batch_size, lr,"), line
    line = one_line(cli("vae-train", "model=conv", "model.encoder.chanels=[8]", cwd=tmp_path), "vae-train")
    assert "did you mean 'model.encoder.channels'?" in line and line.endswith("(with model=conv)")
    # a key of conv's encoder that mlp's lacks: the mlp job of the sweep is named, before any job runs
    line = one_line(cli("vae-train", "-m", "model=conv,mlp", "model.encoder.channels=[8]", cwd=tmp_path), "vae-train")
    assert "unknown key 'model.encoder.channels'" in line and "(keys of model.encoder: hidden_sizes, " in line
    assert line.endswith("(with model=mlp)")
    line = one_line(cli("vae-sample", "ckpt=x.pt", "mode=traverse", "mode.stepz=3", cwd=tmp_path), "vae-sample")
    assert "did you mean 'mode.steps'?" in line
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


def test_other_tools_check_their_own_keys(tmp_path):
    assert "did you mean 'k'?" in one_line(cli("vae-eval", "ckpt=x.pt", "kk=5", cwd=tmp_path), "vae-eval")
    line = one_line(cli("vae-sample", "ckpt=x.pt", "mode=arithmatic", cwd=tmp_path), "vae-sample")
    assert "closest first: arithmetic," in line
    line = one_line(cli("vae-sample", "ckpt=x.pt", "dataset=mnist", cwd=tmp_path), "vae-sample")
    assert "unknown key 'dataset'" in line and "(groups: mode;" in line  # the train groups are not its own
    assert "'max_steps'" in one_line(cli("vae-prior", "ckpt=x.pt", "max_step=5", cwd=tmp_path), "vae-prior")



def test_added_keys_nothing_reads_and_plus_on_an_existing_key_are_one_line(tmp_path):
    """`vae-eval +dataset=fashion_mnist` evaluated the checkpoint's own dataset, exit 0: now refused, saying why.
    `+seed=3` on a key that exists was Hydra's 4-line message with exit 1."""
    line = one_line(cli("vae-eval", "ckpt=x.pt", "+dataset=fashion_mnist", cwd=tmp_path), "vae-eval")
    assert "unknown key 'dataset'" in line and "'dataset' is a vae-train setting: vae-eval rebuilds the model and " \
                                               "data from the checkpoint's stored config" in line
    assert "unknown key 'latent_dim'" in one_line(cli("vae-sample", "ckpt=x.pt", "++latent_dim=3", cwd=tmp_path),
                                                  "vae-sample")
    line = one_line(cli("vae-eval", "ckpt=x.pt", "+seed=3", cwd=tmp_path), "vae-eval")
    assert line == "vae-eval: error: +seed=...: 'seed' is already a key; set it without the '+' (seed=...)"
