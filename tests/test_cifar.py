"""dataset=cifar10 on a tiny fixture written in torchvision's own CIFAR-10 format (pickled batches)."""
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO
from PIL import Image

from vae_cli.data import torchvision_images
from vae_cli.errors import DataError

BIN = Path(sys.executable).parent
NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar(root: Path, per_batch: int = 20, seed: int = 0) -> tuple[Path, np.ndarray]:
    """root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} as the CIFAR site ships them:
    pickled dicts with 'data' (N, 3072) uint8 rows (R plane, G plane, B plane) and 'labels'. -> (root, the
    first training image as (32, 32, 3))."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
                 b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)]}
        with open(folder / name, "wb") as f:
            pickle.dump({k.decode(): v for k, v in batch.items()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072}, f)
    with open(folder / "data_batch_1", "rb") as f:
        first = pickle.load(f)["data"][0].reshape(3, 32, 32).transpose(1, 2, 0)
    return root, first


def test_the_fixture_loads_as_cifar10(tmp_path):
    root, first = write_cifar(tmp_path / "data")
    data = torchvision_images("CIFAR10", root=str(root), val_size=10, binarizable=False, download=False)
    assert data.image_shape == (3, 32, 32) and data.num_classes == 10
    assert (len(data.train), len(data.val), len(data.test)) == (90, 10, 20)
    every = torch.cat([data.train.images, data.val.images])
    assert any(torch.equal(img.permute(1, 2, 0), torch.from_numpy(first)) for img in every)  # HWC -> CHW, exact


def test_a_missing_cifar_is_one_line_naming_the_files(tmp_path):
    with pytest.raises(DataError, match=r"CIFAR10 is not in .* Put cifar-10-python.tar.gz \(or its unpacked "
                                        r"cifar-10-batches-py/\) in"):
        torchvision_images("CIFAR10", root=str(tmp_path), download=False)


@pytest.mark.slow
def test_dataset_cifar10_runs_end_to_end_through_the_cli(tmp_path):
    root, _ = write_cifar(tmp_path / "data")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    run = lambda *a: subprocess.run([str(BIN / a[0]), *a[1:]], cwd=tmp_path, env=env, capture_output=True,  # noqa
                                    text=True, timeout=600)
    done = run("vae-train", "dataset=cifar10", f"data_dir={root}", "dataset.val_size=10", "dataset.download=false",
               "model=conv", "likelihood=discretized_logistic", "likelihood.num_mixtures=2", "trainer=debug",
               "max_steps=2", "trainer.batch_size=16", "trainer.num_images=8", "latent_dim=4",
               "model.encoder.base_channels=8", "model.decoder.base_channels=8", "device=cpu", "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "data: CIFAR10, 90 train / 10 val images of 3x32x32" in done.stdout + done.stderr
    done = run("vae-sample", "ckpt=run", "mode=prior", "mode.num=4", "out=pics")
    assert done.returncode == 0, done.stderr[-2000:]
    (picture,) = (tmp_path / "pics").glob("prior*.png")  # named after the knobs that differ: prior_num-4.png
    assert Image.open(picture).mode == "RGB"
