"""dataset=folder through the real CLI: vae-train, then vae-eval and every vae-sample mode, in colour; a moved
folder, a flat folder and a data_dir of images are one line each."""
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from imagefiles import class_folders, flat_folder
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

BIN = Path(sys.executable).parent
TINY = ["dataset.image_size=16", "model=conv", "likelihood=discretized_logistic", "likelihood.num_mixtures=2",
        "trainer=debug", "max_steps=3", "trainer.batch_size=8", "trainer.num_images=8", "latent_dim=4",
        "dataset.val_size=4", "dataset.test_size=9", "device=cpu", "model.encoder.base_channels=8",
        "model.decoder.base_channels=8", "model.encoder.hidden=32", "model.decoder.hidden=32"]
MODES = {"prior": ["mode.num=8", "mode.sample_pixels=true"], "reconstruct": [], "interpolate": ["mode.pairs=2"],
         "traverse": [], "arithmetic": ["mode.a=0", "mode.b=1", "mode.target=2", "mode.num=2"],
         "latent_map": []}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(cwd / "xdg")}
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=600)


def one_line(done: subprocess.CompletedProcess, tool: str) -> str:
    lines = [ln for ln in done.stderr.splitlines() if ln.strip() and "%|" not in ln]  # progress bars aside
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1 and lines[0].startswith(f"{tool}: error: "), done.stderr
    return lines[0]


def is_colour(png: Image.Image) -> bool:
    r, g, b = (png.convert("RGB").getchannel(c).tobytes() for c in "RGB")
    return png.mode.startswith("RGB") and (r != g or g != b)


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory) -> tuple[Path, Path]:
    """(a folder of class sub-folders, the run dir of a tiny vae-train on it)."""
    root = tmp_path_factory.mktemp("folder_run")
    images = class_folders(root / "animals", per_class=10)
    done = cli("vae-train", "dataset=folder", f"dataset.path={images}", f"dataset.cache_dir={root / 'cache'}",
               *TINY, "hydra.run.dir=run", cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "skipped 2 unreadable or truncated image file(s)" in done.stdout + done.stderr
    return images, root / "run"


@pytest.mark.slow
def test_train_shows_colour_samples_in_tensorboard(folder_run):
    acc = EventAccumulator(str(folder_run[1]), size_guidance={"images": 0})
    acc.Reload()
    tags = [t for t in acc.Tags()["images"] if t.startswith("samples/")]
    assert tags
    picture = Image.open(io.BytesIO(acc.Images(tags[0])[-1].encoded_image_string))
    assert is_colour(picture)


@pytest.mark.slow
def test_eval_and_every_sample_mode_work_on_a_folder_run(folder_run):
    _, run = folder_run
    done = cli("vae-eval", f"ckpt={run}", "k=2", cwd=run.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((run / "eval-best" / "metrics.json").read_text())
    assert metrics["dataset"] == "folder:animals" and 0 < metrics["bits_per_dim"] < 16
    for mode, knobs in MODES.items():
        done = cli("vae-sample", f"ckpt={run}", f"mode={mode}", *knobs, f"out={run / 'pics' / mode}",
                   cwd=run.parent)
        assert done.returncode == 0, (mode, done.stderr[-2000:])
        pngs = sorted((run / "pics" / mode).glob("*.png"))
        assert pngs, mode
        if mode != "latent_map":  # the scatter plot is matplotlib's, not the images
            assert all(is_colour(Image.open(p)) for p in pngs), mode


@pytest.mark.slow
def test_a_moved_folder_is_one_line_and_data_dir_points_at_its_new_place(folder_run, tmp_path):
    images, run = folder_run
    moved = tmp_path / "moved"
    shutil.copytree(run, tmp_path / "run")
    shutil.move(str(images), str(moved))
    try:
        for tool in ("vae-eval", "vae-sample"):
            line = one_line(cli(tool, f"ckpt={tmp_path / 'run'}", cwd=tmp_path), tool)
            assert f"dataset.path={images}" in line and "data_dir=" in line
        before = sorted(moved.rglob("*"))
        for tool in ("vae-eval", "vae-sample"):
            done = cli(tool, f"ckpt={tmp_path / 'run'}", f"data_dir={moved}", cwd=tmp_path)
            assert done.returncode == 0, done.stderr[-2000:]
        assert sorted(moved.rglob("*")) == before  # nothing written into the user's folder
    finally:
        shutil.move(str(moved), str(images))


@pytest.mark.slow
def test_a_flat_folder_trains_and_the_modes_that_need_labels_say_so(tmp_path):
    images = flat_folder(tmp_path / "flat", n=30, size=(20, 20))
    done = cli("vae-train", "dataset=folder", f"dataset.path={images}", f"dataset.cache_dir={tmp_path / 'c'}",
               *TINY, "hydra.run.dir=run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    line = one_line(cli("vae-sample", f"ckpt={tmp_path / 'run'}", "mode=arithmetic", cwd=tmp_path), "vae-sample")
    assert "needs a labelled dataset" in line
    too_big = cli("vae-train", "dataset=folder", f"dataset.path={images}", f"dataset.cache_dir={tmp_path / 'c'}",
                  *TINY, "trainer.batch_size=64", "hydra.run.dir=big", cwd=tmp_path)
    assert "trainer.batch_size=64 is larger than the 17 training examples of folder:flat;" in one_line(too_big,
                                                                                                     "vae-train")


def test_a_data_dir_of_images_is_one_line_and_nothing_is_written_there(tmp_path):
    images = flat_folder(tmp_path / "photos", n=3, size=(8, 8))
    before = sorted(images.rglob("*"))
    line = one_line(cli("vae-train", "dataset=mnist", f"data_dir={images}", "trainer=debug", "hydra.run.dir=run", cwd=tmp_path),
                    "vae-train")
    assert f"dataset=folder dataset.path={images}" in line
    assert sorted(images.rglob("*")) == before
