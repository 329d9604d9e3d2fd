"""The decoded-images cache of dataset=folder: a hit, a miss after a file changes, concurrent starts."""
import logging
import os
import subprocess
import sys
import time

import pytest
import torch
from imagefiles import flat_folder, picture
from PIL import Image

from vae_cli.data import cache, folder_images
from vae_cli.data.scan import list_folder

LOAD = """
import logging, sys, torch
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
from vae_cli.data import folder_images
d = folder_images(sys.argv[1], image_size=8, cache_dir=sys.argv[2], val_size=2, test_size=2)
torch.save(torch.cat([d.train.images, d.val.images, d.test.images]), sys.argv[3])
"""


def load(folder, cache_dir, **kw):
    return folder_images(str(folder), image_size=8, cache_dir=str(cache_dir), val_size=2, test_size=2, **kw)


def every_image(data):
    return torch.cat([data.train.images, data.val.images, data.test.images])


def test_a_second_load_hits_the_cache_and_a_changed_file_misses_it(tmp_path, caplog):
    folder, cache_dir = flat_folder(tmp_path / "imgs", n=12, size=(16, 16)), tmp_path / "cache"
    first = load(folder, cache_dir)
    files = list(cache_dir.glob("*.pt"))
    assert len(files) == 1 and files[0].with_name(files[0].name + ".lock").exists()
    stamp = files[0].stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="vae_cli"):
        second = load(folder, cache_dir)
    assert any("images from the cache" in r.getMessage() for r in caplog.records)
    assert files[0].stat().st_mtime_ns == stamp  # read, not rewritten
    assert torch.equal(every_image(first), every_image(second))

    Image.fromarray(picture(1234, (16, 16))).save(folder / "img_003.png")  # new content in one file
    os.utime(folder / "img_003.png", ns=(stamp + 10**9, stamp + 10**9))
    with caplog.at_level(logging.INFO, logger="vae_cli"):
        third = load(folder, cache_dir)
    assert not torch.equal(every_image(first), every_image(third))
    assert list(cache_dir.glob("*.pt")) != files and len(list(cache_dir.glob("*.pt"))) == 1  # new key, old gone
    assert not files[0].exists() and not files[0].with_name(files[0].name + ".lock").exists()
    assert any("removed 1 older cache" in r.getMessage() for r in caplog.records)
    load(folder, cache_dir, channels=1)
    assert len(list(cache_dir.glob("*.pt"))) == 2  # another transform, another key, both kept


def test_the_key_follows_paths_sizes_mtimes_and_transform(tmp_path):
    folder = flat_folder(tmp_path / "imgs", n=3, size=(8, 8))
    stats = list_folder(folder).stats
    key = cache.cache_file(folder, stats, {"image_size": 8}, str(tmp_path))
    assert key == cache.cache_file(folder, list_folder(folder).stats, {"image_size": 8}, str(tmp_path))
    assert key != cache.cache_file(folder, stats, {"image_size": 16}, str(tmp_path))
    assert key != cache.cache_file(folder, [stats[0], stats[1], (stats[2][0], stats[2][1] + 1, stats[2][2])],
                                   {"image_size": 8}, str(tmp_path))
    (folder / "img_000.png").rename(folder / "renamed.png")
    assert key != cache.cache_file(folder, list_folder(folder).stats, {"image_size": 8}, str(tmp_path))


def start(folder, cache_dir, out):
    return subprocess.Popen([sys.executable, "-c", LOAD, str(folder), str(cache_dir), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_a_start_that_finds_the_cache_being_built_waits_and_reads_it(tmp_path):
    folder, cache_dir = flat_folder(tmp_path / "imgs", n=12, size=(16, 16)), tmp_path / "cache"
    path = cache.cache_file(folder, list_folder(folder).stats, {"channels": 3, "image_size": 8, "crop": None},
                            str(cache_dir))
    with cache.building(path):  # this process "decodes" ...
        proc = start(folder, cache_dir, tmp_path / "second.pt")
        first_line = proc.stdout.readline()  # blocks until the second start logs
        assert "another vae-cli is decoding these images" in first_line, proc.stderr.read()
        time.sleep(0.5)
        assert proc.poll() is None and cache.load(path) is None  # it waits; nothing written yet
        data = load(folder, tmp_path / "own")  # the same images, then written where the second one waits
        cache.save(path, torch.load(next((tmp_path / "own").glob("*.pt")), weights_only=True))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "images from the cache" in out and "decoding" not in err  # it read this cache, decoded nothing
    assert torch.equal(torch.load(tmp_path / "second.pt"), every_image(data))


@pytest.mark.slow
def test_two_concurrent_starts_leave_one_sound_cache(tmp_path):
    folder, cache_dir = flat_folder(tmp_path / "imgs", n=300, size=(16, 16)), tmp_path / "cache"
    procs = [start(folder, cache_dir, tmp_path / f"{i}.pt") for i in range(2)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    caches = list(cache_dir.glob("*.pt"))
    assert len(caches) == 1 and not list(cache_dir.glob("*.tmp"))
    entry = torch.load(caches[0], weights_only=True)
    assert torch.equal(torch.load(tmp_path / "0.pt"), torch.load(tmp_path / "1.pt"))
    assert entry["images"].shape == (300, 3, 8, 8)
