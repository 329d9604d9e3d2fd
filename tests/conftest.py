"""Shared fixtures: a writable copy of ../shared/data as VAE_DATA_DIR, composing the real config tree."""
import os
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VAE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def data_dir(tmp_path_factory) -> Path:
    """A writable copy of ../shared/data (torchvision unpacks into it); MNIST alone if it is absent.

    Set as VAE_DATA_DIR for this process and for the CLI subprocesses the tests start. Never downloads.
    """
    root = tmp_path_factory.mktemp("data")
    if SHARED_DATA.is_dir():
        shutil.copytree(SHARED_DATA, root, dirs_exist_ok=True)
        for p in root.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
    os.environ["VAE_DATA_DIR"] = str(root)
    return root


def has_dataset(root: Path, name: str) -> bool:
    return any((root / name / "raw").glob("*.gz")) or any((root / name / "raw").glob("*ubyte"))


def make_cfg(*overrides: str) -> DictConfig:
    """The real config tree composed with overrides, as `vae-train` would see it."""
    with initialize_config_module("vae_cli.configs", version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.fixture
def cfg_factory():
    return make_cfg
