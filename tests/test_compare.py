"""vae-compare on real runs made by the CLI: varied keys, seeds folded, values as the events hold them, sort
order, statuses (running, stopped, failed), formats, pictures; vae-eval over a sweep dir."""
import csv
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from vae_cli.compare.runs import Run
from vae_cli.compare.table import varied_keys

SWEEP = ["beta=1,4", "seed=0,1", "max_steps=10", "trainer.eval_every=5"]  # validations at steps 5 and 10


def compare(*args: str) -> subprocess.CompletedProcess:
    from clitools import env

    return subprocess.run([sys.executable, "-m", "vae_cli.compare", *map(str, args)], capture_output=True, text=True,
                          env=env(), timeout=120)


def scalars(run_dir: Path) -> dict[str, list[float]]:
    """Each val/ series as TensorBoard reads it, independently of vae-compare."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = Path(run_dir).rglob("events.out.tfevents.*")
    acc = EventAccumulator(str(events.parent), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [e.value for e in acc.Scalars(t)] for t in acc.Tags()["scalars"] if t.startswith("val/")}


def snapshot(root: Path) -> dict:
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """2 betas x 2 seeds, 10 steps each, through the real `vae-train -m`; (sweep dir, its stderr)."""
    from clitools import TINY, run

    root = tmp_path_factory.mktemp("compare") / "sweep"
    done = run("-m", *TINY, *SWEEP, f"hydra.sweep.dir={root}", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return root, done.stderr


@pytest.mark.slow
def test_a_sweep_tabulates_beta_with_seeds_folded_and_the_values_the_events_hold(sweep):
    root, _ = sweep
    done = compare(root, "format=json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    fixed = {"best", "n", "status", "detail", "runs"}
    metric = {k for k in rows[0] if "/" in k or k.removesuffix("_std") in ("steps", "wall_s")}
    assert set(rows[0]) - fixed - metric == {"beta"}  # seed folded into n
    assert sorted(r["beta"] for r in rows) == ["1", "4"] and [r["n"] for r in rows] == [2, 2]
    for row in rows:
        series = [scalars(run) for run in row["runs"]]
        assert all(len(s["val/elbo"]) == 2 for s in series)  # so the final value is not the only one
        best = [max(s["val/elbo"]) for s in series]
        assert row["val/best_elbo"] == pytest.approx(statistics.fmean(best), rel=1e-12)
        assert row["val/best_elbo_std"] == pytest.approx(statistics.stdev(best), rel=1e-9)
        for tag in ("val/elbo", "val/rate", "val/distortion", "val/active_units"):
            assert row[tag] == pytest.approx(statistics.fmean(s[tag][-1] for s in series), rel=1e-12), tag
        assert row["steps"] == 10 and row["status"] == "finished"
    assert rows[0]["val/best_elbo"] > rows[1]["val/best_elbo"]  # best first
    assert [r["best"] for r in rows] == [True, False]


@pytest.mark.slow
def test_text_csv_and_sort_and_the_sweeps_own_summary(sweep):
    root, stderr = sweep
    summary = stderr[stderr.index("vae-train: sweep: 4 of 4 jobs passed"):].splitlines()
    assert summary[1].split()[:3] == ["beta", "n", "val/best_elbo"] and summary[2].startswith("*")
    assert f"vae-compare {root}" in summary[-1]
    text = compare(root, "sort=val/rate", "format=markdown").stdout.splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in text[:4]]
    rates = [float(row[cells[0].index("val/rate")].split(" ± ")[0]) for row in cells[2:]]
    assert rates == sorted(rates) and [row[0] for row in cells[2:]] == ["*", ""]
    assert cells[0][:3] == ["", "beta", "n"] and "sorted by val/rate (* best)" in text
    out = root.parent / "table.csv"
    done = compare(root, "format=csv", f"out={out}", "ignore=")
    assert done.returncode == 0 and done.stdout == "", done.stderr
    records = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(records) == 4 and {r["seed"] for r in records} == {"0", "1"} and {r["n"] for r in records} == {"1"}
    elbos = [float(r["val/best_elbo"]) for r in records]
    assert elbos == sorted(elbos, reverse=True) and [r["best"] for r in records] == ["True"] + ["False"] * 3


@pytest.mark.slow
def test_running_stopped_failed_and_half_written_runs_show_with_their_status(sweep):
    from clitools import TINY, run, start, wait_for

    root = sweep[0].parent / "mixed"
    shutil.copytree(sweep[0], root / "sweep")
    bad = run("-m", *[a for a in TINY if not a.startswith("latent_dim=")], "latent_dim=0",
              f"hydra.sweep.dir={root / 'bad'}")
    assert bad.returncode == 2
    killed = root / "killed"
    proc = start(*TINY, "max_steps=1000000", "trainer.eval_every=5", f"hydra.run.dir={killed}")
    try:
        wait_for("checkpoints/step_*.pt", killed, proc)
        live = json.loads(compare(root, "format=json").stdout)
        assert [r["status"] for r in live if str(killed) in r["runs"]] == ["running"]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    half, empty = sorted(p for p in (root / "sweep").iterdir() if p.name[:2] in ("0_", "1_"))
    (events,) = half.rglob("events.out.tfevents.*")
    events.write_bytes(events.read_bytes()[:-30])  # a writer killed mid-record
    (events,) = empty.rglob("events.out.tfevents.*")
    events.write_bytes(b"")
    vq = run("model=vqvae", "trainer=debug", "max_steps=5", "device=cpu", f"hydra.run.dir={root / 'vq'}")
    assert vq.returncode == 0, vq.stderr[-2000:]
    before = snapshot(root)
    done = compare(root, "format=json", "ignore=")  # one row per run
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert snapshot(root) == before  # nothing in a run dir written or touched
    rows = {Path(r["runs"][0]).name: r for r in json.loads(done.stdout)}
    assert rows["killed"]["status"] == "stopped" and rows["killed"]["detail"] == f"vae-train resume={killed}"
    (failed,) = [r for name, r in rows.items() if name.startswith("0_") and r["latent_dim"] == "0"]
    assert failed["status"] == "failed" and failed["detail"] == "latent_dim=0 must be a positive integer"
    assert failed["val/elbo"] is None
    assert rows[half.name]["status"] == "finished" and rows[half.name]["steps"] == 10  # the records before the cut
    assert rows[empty.name]["val/elbo"] is None and rows[empty.name]["detail"] == "no scalars in the event files yet"
    assert rows["vq"]["val/elbo"] is None and rows["vq"]["val/distortion"] > 0  # a family without an ELBO: blanks
    assert len(rows) == 7


def test_a_path_without_runs_a_typo_and_an_unknown_sort_are_one_line(tmp_path):
    for args, says in [((tmp_path / "nothing",), "no such file or directory"), ((tmp_path,), "no run dir under"),
                       ((tmp_path, "srot=val/elbo"), "unknown key 'srot' — did you mean 'sort'?"),
                       ((tmp_path, "format=xml"), "format=xml: choose one of text, markdown, csv, json")]:
        done = compare(*args)
        assert done.returncode == 2 and done.stdout == "", done.stderr
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("vae-compare: error: ") and says in done.stderr


def test_varied_keys_are_the_groups_that_differ_not_their_leaves():
    mlp = Run(Path("a"), {"model": "mlp", "model.encoder._target_": "MLP", "beta": "1", "seed": "0"}, ["model"])
    conv = Run(Path("b"), {"model": "conv", "model.encoder._target_": "Conv", "beta": "1", "seed": "1",
                           "model.encoder.channels": "[8]"}, ["model", "model.encoder.channels"])
    vq = Run(Path("c"), {"model": "vqvae", "seed": "0"}, ["model"])  # no beta: unknown, not a difference
    assert varied_keys([mlp, conv, vq]) == ["model", "seed"]
    conv.keys["model.encoder.channels"], conv.typed = "[16]", ["model.encoder.channels"]
    other = Run(Path("d"), {**conv.keys, "model.encoder.channels": "[8]"}, ["model.encoder.channels"])
    assert varied_keys([conv, other]) == ["model.encoder.channels"]


@pytest.mark.slow
def test_pictures_are_written_at_their_size(sweep, tmp_path):
    import matplotlib.image

    done = compare(sweep[0], f"plot={tmp_path}")
    assert done.returncode == 0, done.stderr
    sizes = {"rate_distortion.png": (600, 800), "val_elbo.png": (500, 1300)}
    for name in ("rate_distortion.png", "val_elbo.png", "prior_samples.png"):
        image = matplotlib.image.imread(tmp_path / name)
        assert image[..., :3].std() > 0.01, name  # not a blank canvas
        if name in sizes:
            assert image.shape[:2] == sizes[name]
    assert matplotlib.image.imread(tmp_path / "prior_samples.png").shape[1] == 4 * 250  # 4 runs side by side


@pytest.mark.slow
def test_vae_eval_over_a_sweep_dir_evaluates_each_run_once_and_compare_shows_it(sweep, tmp_path):
    from hydra import compose, initialize_config_module

    from vae_cli.apps.evaluate import run_eval

    root = tmp_path / "sweep"
    shutil.copytree(sweep[0], root)
    quick = ["k=3", "num_examples=16", "quality=false", "progress=false", "device=cpu"]
    with initialize_config_module("vae_cli.configs", version_base="1.3"):
        cfg = compose("eval", overrides=[f"ckpt={root}", *quick])
        again = compose("eval", overrides=[f"ckpt={root}", *quick[:1], "num_examples=8", *quick[2:]])
    records = run_eval(cfg)
    assert len(records) == 4 and len({r["checkpoint"] for r in records}) == 4
    written = {p: p.stat().st_mtime_ns for p in root.rglob("eval-best/metrics.json")}
    assert run_eval(cfg) == [] and {p: p.stat().st_mtime_ns for p in written} == written  # same settings: skipped
    assert len(run_eval(again)) == 4  # other settings: evaluated again
    rows = json.loads(compare(root, "format=json", "ignore=").stdout)
    for row in rows:
        metrics = json.loads((Path(row["runs"][0]) / "eval-best" / "metrics.json").read_text())
        assert row["test/iw_nll"] == pytest.approx(metrics["iw_nll"]) and metrics["num_examples"] == 8


def test_the_c_checksum_given_to_tensorboard_equals_its_own():
    import importlib
    import os

    from tensorboard.compat.tensorflow_stub import pywrap_tensorflow

    from vae_cli.compare.events import fast_checksums

    stub = importlib.reload(pywrap_tensorflow)  # TensorBoard's own pure-Python masked CRC-32C again
    pure = stub.masked_crc32c
    fast_checksums()
    assert stub.masked_crc32c is not pure
    for data in (b"", b"\x00" * 9, b"123456789", os.urandom(4096)):
        assert stub.masked_crc32c(data) == pure(data)


def test_status_from_the_lock_error_txt_train_log_and_checkpoints(tmp_path):
    from vae_cli.compare.status import run_status
    from vae_cli.training.rundir import lock

    held = lock(tmp_path)  # as vae-train holds it: another open file, so the probe sees it as another holder's
    assert run_status(tmp_path) == ("running", f"PID {os.getpid()} on {os.uname().nodename}")
    held.close()
    assert run_status(tmp_path)[0] == "failed"  # ended before any checkpoint, no error recorded
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "step_000000010.pt").write_bytes(b"")
    assert run_status(tmp_path) == ("stopped", f"vae-train resume={tmp_path}")
    start, done = "[t][vae_cli][INFO] - run dir /x | device cpu\n", "[t][vae_cli][INFO] - done: val elbo -1\n"
    (tmp_path / "train.log").write_text(start + done)
    assert run_status(tmp_path) == ("finished", "")
    (tmp_path / "train.log").write_text(start + done + start)  # resumed for more steps, then killed
    assert run_status(tmp_path)[0] == "stopped"
    (tmp_path / "error.txt").write_text("Traceback (most recent call last):\n  File x\nValueError: bad shape\n")
    assert run_status(tmp_path) == ("failed", "ValueError: bad shape")
