"""dataset=celeba from files placed in torchvision's layout: the official partition, the crop, the errors."""
import pytest
import torch
from imagefiles import celeba_layout

from conftest import make_cfg
from vae_cli.apps.train import run_training
from vae_cli.data import celeba_images
from vae_cli.errors import DataError


def test_the_official_partition_and_the_crop_then_resize(tmp_path):
    root = celeba_layout(tmp_path / "data")
    data = celeba_images(str(root), image_size=32, crop=148, cache_dir=str(tmp_path / "cache"))
    assert (len(data.train), len(data.val), len(data.test)) == (8, 2, 3)
    assert data.image_shape == (3, 32, 32) and data.num_classes == 1 and not data.binarizable
    assert set(data.train.labels.tolist()) == {0}
    first = data.train.images[0]  # 000001.jpg: the partition file's order is kept
    again = celeba_images(str(root), image_size=32, crop=148, cache_dir=str(tmp_path / "cache"))
    assert torch.equal(again.train.images[0], first)


def test_missing_files_say_exactly_which_go_where(tmp_path):
    with pytest.raises(DataError) as e:
        celeba_images(str(tmp_path))
    folder = tmp_path / "celeba"
    assert str(e.value) == (f"CelebA is not in {folder}: put the aligned JPEGs (img_align_celeba.zip, unzipped) in "
                            f"{folder / 'img_align_celeba'}/ and list_eval_partition.txt in {folder}/ (from the "
                            f"CelebA site or its Google Drive); or set data_dir=... to the folder that holds celeba/")


def test_images_missing_from_the_partition_are_counted(tmp_path):
    root = celeba_layout(tmp_path / "data")
    (root / "celeba" / "img_align_celeba" / "000003.jpg").unlink()
    with pytest.raises(DataError, match=r"1 of the 13 images named in .*list_eval_partition.txt are not in .* "
                                        r"\(first: 000003.jpg\)"):
        celeba_images(str(root), cache_dir=str(tmp_path / "cache"))


def test_dataset_celeba_trains_with_the_conv_model_and_discretized_logistic(tmp_path):
    root = celeba_layout(tmp_path / "data")
    cfg = make_cfg("dataset=celeba", f"data_dir={root}", "dataset.image_size=32", f"dataset.cache_dir={tmp_path}",
                   "model=conv", "likelihood=discretized_logistic", "likelihood.num_mixtures=2", "trainer=debug",
                   "dataset=celeba", "max_steps=2", "trainer.batch_size=4", "trainer.num_images=4",
                   "trainer.eval_every=2", "model.encoder.base_channels=8", "model.decoder.base_channels=8")
    val = run_training(cfg, tmp_path / "run")
    assert torch.isfinite(torch.tensor(val["bits_per_dim"])) and val["bits_per_dim"] > 0
