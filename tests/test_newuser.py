"""The first hour of a new user: progress, typo hints, --help, the shipped classifier, TensorBoard
layout, failed starts, read-only data dirs and labelled latent arithmetic. The real CLI runs in subprocesses."""
import fcntl
import hashlib
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from clitools import TINY, env, scalars
from conftest import REPO, make_cfg

BIN = Path(sys.executable).parent


def cli(tool: str, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / tool), *args], cwd=cwd, capture_output=True, text=True, env=env(),
                          timeout=timeout)


def run_in_pty(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """stderr on a pseudo-terminal (120 columns), stdout on a pipe: (exit code, terminal text, stdout)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen([str(BIN / "vae-train"), *args], cwd=cwd, stdin=slave, stdout=subprocess.PIPE,
                            stderr=slave, env=env())
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    out = proc.stdout.read().decode()
    os.close(master)
    return proc.wait(), b"".join(chunks).decode(errors="replace"), out


def only_run_dir(root: Path) -> Path:
    (run,) = [p.parent for p in root.rglob("train.log")]
    return run


# 1. progress -----------------------------------------------------------------------------------------------

def test_progress_bar_on_a_terminal_with_start_and_end_lines(tmp_path):
    code, terminal, out = run_in_pty([*TINY, "max_steps=64", "trainer.eval_every=32"], tmp_path)
    assert code == 0, terminal + out
    assert "epoch 2/2 100%|" in terminal and "step 64/64" in terminal  # 32 batches of 16 per epoch
    assert "ex/s" in terminal and "elbo -" in terminal and "<00:00" in terminal  # rate, ETA, latest ELBO
    run = only_run_dir(tmp_path / "outputs")
    start = next(line for line in out.splitlines() if "model: " in line and "parameters" in line)
    assert "on cpu" in start and "64 steps = 2 epochs" in start and f"run dir: {run.resolve()}\n" in out
    end = next(line for line in out.splitlines() if "done: " in line)
    assert "done: 64 steps in 0:" in end and "val elbo" in end
    assert f"best checkpoint: {run.resolve() / 'checkpoints' / 'best.pt'}\n" in out
    assert (run / "checkpoints" / "best.pt").is_file() and "progress:" not in out


def test_progress_lines_without_a_terminal_and_quiet_in_multirun(tmp_path):
    proc = cli("vae-train", *TINY, "trainer.progress_every_s=0", cwd=tmp_path)
    lines = [ln for ln in proc.stdout.splitlines() if "progress: " in ln]
    assert proc.returncode == 0 and len(lines) == 30  # every step when the interval is 0 s
    assert "epoch 1/1  step 30/30 (100%)" in lines[-1] and "ETA 0:00" in lines[-1] and "ex/s" in lines[-1]
    assert "\r" not in proc.stderr  # no bar drawn into a log file
    proc = cli("vae-train", "-m", *TINY, "trainer.progress_every_s=0", "seed=0,1", cwd=tmp_path)
    assert proc.returncode == 0 and "progress: " not in proc.stdout + proc.stderr
    proc = cli("vae-train", "-m", *TINY, "trainer.progress_every_s=0", "trainer.progress=true", "seed=0",
               cwd=tmp_path)
    assert proc.returncode == 0 and "progress: " in proc.stdout


# 2. misspelled keys and options -------------------------------------------------------------------------------

def one_line(proc: subprocess.CompletedProcess, tool: str) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"{tool}: error: "), proc.stderr
    return lines[0]


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


def test_help_read_by_a_pipe_that_closes_early_ends_quietly(tmp_path):
    """`vae-train --help | head -1`: the reader is gone before the help is written (closed here at once)."""
    proc = subprocess.Popen([str(BIN / "vae-train"), "--help"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env())
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 1 and err == "", err


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


# 3. --help --------------------------------------------------------------------------------------------------

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


# 4. the shipped classifier ---------------------------------------------------------------------------------

def test_shipped_classifier_weights_match_their_checksums():
    from vae_cli.evaluation.quality import ASSETS, SHIPPED

    for name, digest in SHIPPED.items():
        path = ASSETS / f"{name}.pt"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
        assert path.stat().st_size < 400_000


def test_first_eval_on_mnist_trains_no_classifier(tmp_path, data_dir):
    assert cli("vae-train", "max_steps=2", "trainer.eval_every=2", "device=cpu", "dataset.val_size=500",
               "trainer.eval_batch_size=500", "trainer.num_images=4", "hydra.run.dir=run", cwd=tmp_path).returncode == 0
    proc = cli("vae-eval", "ckpt=run/checkpoints/best.pt", "k=2", "k_chunk=2", "num_examples=200",
               "quality_samples=500", "progress=false", "device=cpu", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "training the sample-quality classifier" not in proc.stdout + proc.stderr
    assert not list((data_dir / "vae-cli-classifiers").glob("MNIST-*"))  # nothing trained, nothing cached
    assert "classifier_fd" in (tmp_path / "run" / "eval-best" / "metrics.json").read_text()


def test_a_tampered_classifier_is_refused(monkeypatch):
    from vae_cli.data import fake_images
    from vae_cli.errors import UserError
    from vae_cli.evaluation import quality

    data = fake_images(image_shape=(1, 28, 28))
    monkeypatch.setattr(data, "name", "MNIST")
    assert quality.shipped_classifier(data) is not None
    monkeypatch.setitem(quality.SHIPPED, "MNIST", "0" * 64)
    with pytest.raises(UserError, match="sha256"):
        quality.shipped_classifier(data)


# 5. TensorBoard --------------------------------------------------------------------------------------------

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


def test_resume_keeps_its_dir_name(tmp_path):
    cli("vae-train", *TINY, "max_steps=10", "trainer.eval_every=5", cwd=tmp_path)
    run = only_run_dir(tmp_path / "outputs")
    proc = cli("vae-train", f"resume={run}", "max_steps=20", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert only_run_dir(tmp_path / "outputs") == run


# 6. failed starts --------------------------------------------------------------------------------------------

def test_failed_starts_leave_no_run_dir(tmp_path):
    refused = cli("vae-train", *TINY, "latent_dim=0", cwd=tmp_path)
    assert one_line(refused, "vae-train") and refused.stdout == ""  # not even the thread policy's line
    empty = tmp_path / "no_data"
    empty.mkdir()
    proc = subprocess.run([str(BIN / "vae-train"), "dataset=fashion_mnist", "dataset.download=false"], cwd=tmp_path,
                          capture_output=True, text=True, env={**env(), "VAE_DATA_DIR": str(empty)})
    assert proc.returncode == 2 and "FashionMNIST is not in" in proc.stderr
    assert list((tmp_path / "outputs").iterdir()) == []
    kept = tmp_path / "kept"
    (kept / "notes").mkdir(parents=True)
    (kept / "notes" / "mine.txt").write_text("x")
    assert cli("vae-train", *TINY, "latent_dim=0", f"hydra.run.dir={kept}", cwd=tmp_path).returncode == 2
    assert (kept / "notes" / "mine.txt").is_file()  # a dir holding anything else is left alone


# 8. read-only data dirs --------------------------------------------------------------------------------------

def test_read_only_data_dir_unpacks_into_the_cache(tmp_path, monkeypatch, data_dir):
    import torchvision

    from vae_cli.data import torchvision_sets as data
    from vae_cli.errors import DataError

    ro = tmp_path / "ro"
    (ro / "MNIST" / "raw").mkdir(parents=True)
    for f in (data_dir / "MNIST" / "raw").glob("*.gz"):
        (ro / "MNIST" / "raw" / f.name).write_bytes(f.read_bytes())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_can_write", lambda folder: not str(folder).startswith(str(ro)))  # root can't chmod
    images = data.torchvision_images("MNIST", str(ro), download=False)
    assert len(images.train) == 55000 and not list((ro / "MNIST" / "raw").glob("*ubyte"))
    assert len(list((tmp_path / "cache" / "vae-cli" / "unpacked" / "MNIST" / "raw").glob("*ubyte"))) == 4
    (tmp_path / "blocked").write_text("a file where the cache dir should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "blocked"))
    with pytest.raises(DataError, match=f"the data dir {ro} is read-only .* set VAE_DATA_DIR"):
        data.unpack_dir(torchvision.datasets.MNIST, ro)


# 9. latent arithmetic ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_arithmetic_on_mnist_is_labelled_and_moves_away_from_c(tmp_path):
    from vae_cli.apps.latent_modes import Arithmetic
    from vae_cli.apps.sample_modes import Context
    from vae_cli.apps.train import run_training
    from vae_cli.build import build_data, build_model

    cfg = make_cfg("max_steps=300", "trainer.eval_every=300", "latent_dim=8", "device=cpu", "trainer.progress=false",
                   "dataset.val_size=500", "trainer.eval_batch_size=500", "trainer.num_images=4")
    run_training(cfg, tmp_path)
    model = build_model(cfg, (1, 28, 28)).eval()
    model.load_state_dict(torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["model"])
    test = build_data(cfg).test
    ctx = Context(model, model.likelihood.prepare(test.images), test.labels, 10)
    mode = Arithmetic(a=1, b=0, target=7, num=8, scales=[0.0, 0.5, 1.0])
    with torch.no_grad():
        cols = mode.columns(ctx)  # (8, 6, 1, 28, 28): a, b, c, c + 0 (a-b), c + 0.5 (a-b), a - b + c
        picture = mode(ctx)["arithmetic_1-0+7"]
    moved = [(cols[:, j] - cols[:, 3]).abs().mean().item() for j in (4, 5)]
    ends = (cols[0, 0] - cols[0, 1]).abs().mean().item()  # how far apart the decoded class means a and b are
    assert moved[1] > moved[0] > 0 and moved[1] > 0.25 * ends, (moved, ends)
    assert mode.labels() == ["a=1", "b=0", "c=7", "c", "c+0.5(a-b)", "a-b+c"]
    header = picture[:, :16]
    assert header.min() < 0.5 < header.max()  # dark label text on the white strip above the grid
