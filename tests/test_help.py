"""--help of every tool: its own groups and keys, quiet into a closed pipe, and its files shipped."""
import subprocess

import pytest

from clitools import BIN, cli, env, one_line
from conftest import REPO


def test_help_read_by_a_pipe_that_closes_early_ends_quietly(tmp_path):
    """`vae-train --help | head -1`: the reader is gone before the help is written (closed here at once)."""
    proc = subprocess.Popen([str(BIN / "vae-train"), "--help"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env())
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 1 and err == "", err


@pytest.mark.slow
def test_each_tool_helps_with_its_own_groups_and_keys(tmp_path):
    train = cli("vae-train", "--help", cwd=tmp_path).stdout
    assert train.startswith("vae-train: train a variational auto-encoder")
    assert "Usage:" in train and "Outputs: one run dir per run" in train and "latent_dim=32" in train
    assert "  model        the encoder/decoder family" in train and "      mlp*" in train
    assert "      conv                   Stride-2 convs" in train  # each option with its file's first comment
    assert "  mode " not in train and "arithmetic" not in train  # vae-sample's group is not vae-train's
    assert "unknown key 'mode'" in one_line(cli("vae-train", "mode=prior", cwd=tmp_path), "vae-train")
    sample = cli("vae-sample", "--help", cwd=tmp_path).stdout
    assert "  mode         the picture to draw" in sample and "      arithmetic " in sample
    assert "  dataset " not in sample and "  ckpt=null" in sample
    assert "k=5000" in cli("vae-eval", "--help", cwd=tmp_path).stdout
    assert "max_steps=2000" in cli("vae-prior", "--help", cwd=tmp_path).stdout


def test_sample_mode_files_are_package_data():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "vae_cli.sample_configs" in project["packages"]
    assert project["package-data"]["vae_cli.sample_configs"] == ["*/*.yaml"]
    assert len(list((REPO / "vae_cli" / "sample_configs" / "mode").glob("*.yaml"))) >= 6
    assert "assets/classifiers/*.pt" in project["package-data"]["vae_cli"]
