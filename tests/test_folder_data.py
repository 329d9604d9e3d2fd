"""dataset=folder on real files written with Pillow: layout, conversions, transform, splits, bad input."""
import logging
import os

import numpy as np
import pytest
import torch
from imagefiles import class_folders, flat_folder, picture, save_as
from PIL import Image

from vae_cli.data import folder_images, torchvision_images
from vae_cli.data.cache import check_device_fits, check_fits
from vae_cli.errors import ConfigError, DataError


@pytest.fixture
def classes(tmp_path):
    return class_folders(tmp_path / "animals")


def load(path, tmp_path, **kw):
    return folder_images(str(path), cache_dir=str(tmp_path / "cache"), **kw)


def test_class_sub_folders_are_labels_and_bad_files_are_skipped_with_one_warning(classes, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="vae_cli"):
        data = load(classes, tmp_path, image_size=16, val_size=3, test_size=3)
    assert data.num_classes == 3  # cats, dogs, owls; the empty folder is no class, notes.txt no image
    assert len(data.train) + len(data.val) + len(data.test) == 36  # 3 x 12 readable; broken + truncated skipped
    labels = torch.cat([data.train.labels, data.val.labels, data.test.labels])
    assert torch.bincount(labels).tolist() == [12, 12, 12]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipped 2 unreadable" in warnings[0]
    assert "cats/broken.png" in warnings[0] and "dogs/truncated.png" in warnings[0]
    assert data.image_shape == (3, 16, 16) and data.train.images.dtype == torch.uint8
    assert not data.binarizable


def test_a_flat_folder_has_one_class(tmp_path):
    data = load(flat_folder(tmp_path / "flat", n=20), tmp_path, image_size=None, val_size=0.1, test_size=0.1)
    assert data.num_classes == 1 and set(data.train.labels.tolist()) == {0}
    assert data.image_shape == (3, 32, 32)  # image_size=null keeps the size
    assert (len(data.train), len(data.val), len(data.test)) == (16, 2, 2)


def test_a_symlink_cycle_lists_each_image_once(tmp_path):
    from vae_cli.data.scan import list_folder

    root = flat_folder(tmp_path / "flat", n=3)
    (root / "nested").mkdir()
    (root / "nested" / "up").symlink_to(root, target_is_directory=True)  # nested/up/nested/up/... forever
    (root / "again").symlink_to(root / "nested", target_is_directory=True)  # one folder reached twice
    listing = list_folder(root)
    assert sorted(os.path.basename(f) for f in listing.files) == ["img_000.png", "img_001.png", "img_002.png"]


def one_image_folder(tmp_path, img: Image.Image, name="x.png"):
    folder = tmp_path / "one"
    folder.mkdir()
    img.save(folder / name)
    img.save(folder / ("y" + name[1:]))
    img.save(folder / ("z" + name[1:]))
    return folder


def all_images(data):
    return torch.cat([data.train.images, data.val.images, data.test.images])


@pytest.mark.parametrize("mode", ["L", "P", "RGBA"])
def test_grey_palette_and_rgba_images_become_rgb_or_grey(mode, tmp_path):
    rgb = picture(7, (24, 24))
    save_as(tmp_path / "src" / "a.png", rgb, mode)
    folder = one_image_folder(tmp_path, Image.open(tmp_path / "src" / "a.png"))
    colour = all_images(load(folder, tmp_path, image_size=None, channels=3, val_size=1, test_size=1))
    grey = all_images(load(folder, tmp_path, image_size=None, channels=1, val_size=1, test_size=1))
    assert colour.shape == (3, 3, 24, 24) and grey.shape == (3, 1, 24, 24)
    if mode == "L":  # grey in, the same grey in all three channels
        assert torch.equal(colour[:, 0], colour[:, 1]) and torch.equal(colour[:, 1], colour[:, 2])


def test_transparent_pixels_become_white(tmp_path):
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # fully transparent black
    img.putpixel((0, 0), (0, 0, 0, 255))  # one opaque black pixel
    images = all_images(load(one_image_folder(tmp_path, img), tmp_path, image_size=None, val_size=1, test_size=1))
    assert images[0, :, 0, 0].tolist() == [0, 0, 0]
    assert images[0, :, 4, 4].tolist() == [255, 255, 255]


def test_image_size_resizes_the_shorter_side_then_centre_crops(tmp_path):
    """A 20 x 40 (w x h) image: red top 6 rows, green middle, blue bottom 6 rows. Resized to 10 x 20 (red and
    blue: 3 rows each) and centre-cropped to 10 x 10 (rows 5..14), only green is left; a top crop keeps red."""
    a = np.zeros((40, 20, 3), np.uint8)
    a[:6, :, 0], a[6:34, :, 1], a[34:, :, 2] = 255, 255, 255
    images = all_images(load(one_image_folder(tmp_path, Image.fromarray(a)), tmp_path, image_size=10,
                             val_size=1, test_size=1))
    assert images.shape == (3, 3, 10, 10)
    assert images[:, 1].min() >= 250 and images[:, 0].max() <= 5 and images[:, 2].max() <= 5


def test_crop_is_a_first_centre_crop(tmp_path):
    a = np.zeros((40, 40, 3), np.uint8)
    a[10:30, 10:30] = 200  # a grey centre square inside a black frame
    images = all_images(load(one_image_folder(tmp_path, Image.fromarray(a)), tmp_path, crop=20, image_size=8,
                             val_size=1, test_size=1))
    assert images.shape == (3, 3, 8, 8) and images.min() == 200 and images.max() == 200


def test_splits_are_seeded_disjoint_and_take_counts_or_fractions(tmp_path):
    folder = flat_folder(tmp_path / "flat", n=40, size=(8, 8))
    a = load(folder, tmp_path, image_size=None, val_size=5, test_size=0.25, split_seed=1)
    b = load(folder, tmp_path, image_size=None, val_size=5, test_size=0.25, split_seed=1)
    c = load(folder, tmp_path, image_size=None, val_size=5, test_size=0.25, split_seed=2)
    assert (len(a.train), len(a.val), len(a.test)) == (25, 5, 10)
    assert torch.equal(a.val.images, b.val.images) and not torch.equal(a.val.images, c.val.images)
    rows = {tuple(x.flatten().tolist()) for x in all_images(a)}
    assert len(rows) == 40  # every image once: the parts are disjoint and cover the folder


@pytest.mark.parametrize("kw, message", [
    ({"val_size": 0}, "dataset.val_size=0 must be a count >= 1"),
    ({"test_size": 1.5}, "dataset.test_size=1.5 must be a fraction in (0, 1)"),
    ({"val_size": 30, "test_size": 10}, "leave no training image"),
    ({"channels": 2}, "dataset.channels=2 must be 1 (greyscale) or 3 (RGB)"),
    ({"image_size": 0}, "dataset.image_size=0 must be a positive number"),
])
def test_bad_knobs_are_one_line_naming_the_value(kw, message, tmp_path):
    with pytest.raises(ConfigError) as e:
        load(flat_folder(tmp_path / "flat", n=20, size=(8, 8)), tmp_path, **{"image_size": None, **kw})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_an_empty_or_missing_folder_is_one_line(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"dataset.path=.*empty holds no image files"):
        load(tmp_path / "empty", tmp_path)
    with pytest.raises(DataError, match=r"dataset.path=.*nowhere does not exist"):
        load(tmp_path / "nowhere", tmp_path)
    with pytest.raises(ConfigError, match="dataset=folder needs dataset.path=DIR"):
        folder_images(None)


def test_only_unreadable_files_is_one_line(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="none of its 1 image files could be read"):
        load(folder, tmp_path)


def test_mixed_sizes_without_image_size_name_the_knob(tmp_path):
    folder = flat_folder(tmp_path / "flat", n=5, size=(16, 16))
    Image.fromarray(picture(99, (20, 16))).save(folder / "wide.png")
    with pytest.raises(DataError, match=r"wide.png is not 16x16 .* set dataset.image_size"):
        load(folder, tmp_path, image_size=None)


def test_a_cache_too_big_for_memory_names_image_size():
    with pytest.raises(DataError) as e:
        check_fits(200_000, (3, 128, 128), "dataset.image_size", available=8 * 2**30)
    assert "need 18.3 GiB" in str(e.value) and "lower dataset.image_size (e.g. dataset.image_size=64)" in str(e.value)
    check_fits(1000, (3, 64, 64), "dataset.image_size", available=8 * 2**30)  # 24 MiB: fine


def test_images_too_big_for_the_device_name_image_size():
    with pytest.raises(DataError, match=r"the images take 3.0 GiB and cuda has 4.0 GiB free: lower "
                                        r"dataset.image_size"):
        check_device_fits(3 * 2**30, torch.device("cuda"), free=4 * 2**30)
    check_device_fits(1 * 2**30, torch.device("cuda"), free=4 * 2**30)


def test_a_data_dir_of_images_points_at_dataset_folder_and_writes_nothing(tmp_path):
    folder = flat_folder(tmp_path / "photos", n=3)
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    for name in ("MNIST", "CIFAR10"):
        with pytest.raises(DataError, match=rf"data_dir={folder} holds images but no {name} files: .* "
                                            rf"dataset=folder dataset.path={folder}"):
            torchvision_images(name, root=str(folder))
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before


def test_an_unknown_torchvision_name_is_one_line():
    with pytest.raises(ConfigError, match="dataset.name='ImageFolder' is not a dataset vae-cli reads.*dataset=folder"):
        torchvision_images("ImageFolder")
