"""Speed knobs: each one reaches torch, trains, and the hot loop reads nothing back from the device per step."""
import pytest
import torch

import inspect

from vae_cli.build import build_data, build_model, build_objective, build_trainer, set_run_length
from vae_cli.training.trainer import Run
from vae_cli.training.vae_task import VAETask


def fit_debug(cfg_factory, tmp_path, *overrides):
    """trainer=debug through the real Trainer; -> (trainer, model, data, objective, final val)."""
    cfg = cfg_factory("trainer=debug", "device=cpu", *overrides)
    torch.manual_seed(cfg.seed)
    data = build_data(cfg)
    set_run_length(cfg, len(data.train))
    model, objective = build_model(cfg, data.image_shape), build_objective(cfg)
    trainer = build_trainer(cfg)
    val = trainer.fit(VAETask(model, objective, data), torch.device("cpu"), Run(tmp_path, {}))
    return trainer, model, data, objective, val


def test_fused_adam_and_channels_last_reach_torch(cfg_factory, tmp_path):
    trainer, model, _, _, val = fit_debug(cfg_factory, tmp_path, "model=conv", "max_steps=4",
                                          "optimizer.fused=true", "trainer.channels_last=true")
    assert trainer.opt.defaults["fused"] is True
    convs = [m.weight for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert all(not w.is_contiguous() for w in convs if w.shape[1] > 1)  # really NHWC, not NCHW
    assert torch.isfinite(torch.tensor(val["elbo"]))


def test_fused_adam_takes_the_same_steps_as_plain_adam(cfg_factory, tmp_path):
    params = [fit_debug(cfg_factory, tmp_path / str(f), "max_steps=5", f"optimizer.fused={f}")[1].parameters()
              for f in (False, True)]
    for a, b in zip(*params):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_compiled_step_trains_without_recompiling_each_step(cfg_factory, tmp_path, monkeypatch):
    """Dynamo captures the step once (aot_eager here: inductor's C++ build takes minutes on 2 cores; the
    benchmark's knob rows run the real inductor backend)."""
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, mode=None: real_compile(fn, mode=mode, backend="aot_eager"))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    _, _, _, _, val = fit_debug(cfg_factory, tmp_path, "trainer.compile=true", "max_steps=6", "trainer.log_every=3",
                                "trainer.eval_every=6")
    frames = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert 1 <= frames <= 3, f"{frames} graphs compiled for 6 steps"  # step 0 specialized, then dynamic
    assert -600 < val["elbo"] < 0


def test_compile_mode_without_compile_is_a_config_error(cfg_factory, tmp_path):
    from vae_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="compile_mode='max-autotune'"):
        fit_debug(cfg_factory, tmp_path, "trainer.compile_mode=max-autotune", "max_steps=1")


@pytest.mark.parametrize("overrides", [["objective=kl_annealing", "schedule.warmup_steps=4", "lr_schedule=cosine"],
                                       ["model=gumbel", "objective.temperature.rate=0.1", "schedule=cyclical",
                                        "schedule.n_cycles=1"]])
def test_the_step_function_takes_no_python_value_that_changes_per_step(cfg_factory, tmp_path, overrides):
    """What a captured CUDA graph needs: the step reads the step counter and the batch from device tensors.
    The objective sees the same step tensor object every step (its value advancing in place), and beta,
    the temperature and the lr it computes from it equal the Python-int schedules."""
    trainer, model, _, objective, _ = fit_debug(cfg_factory, tmp_path, "max_steps=2", *overrides)
    fn = trainer.step_fn
    assert inspect.signature(fn).parameters == {}
    seen, module = [], fn.module
    fn.module = lambda x, step, y: (seen.append((id(step), int(step), objective.knobs(step))), module(x, step, y))[1]
    for _ in range(4):
        trainer._train_step()
    assert len({i for i, _, _ in seen}) == 1 and [s for _, s, _ in seen] == [2, 3, 4, 5]
    for _, s, knobs in seen:
        for name, value in knobs.items():
            assert torch.as_tensor(value).item() == pytest.approx(objective.knobs(s)[name], rel=1e-6), name
    lr = trainer.opt.param_groups[0]["lr"]  # set for the last update, step 5
    assert lr == pytest.approx(trainer.sched.value(5) * trainer.loop.lr, rel=1e-6)


def test_cuda_graph_true_off_cuda_is_one_config_error_before_training(cfg_factory, tmp_path):
    from vae_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="trainer.cuda_graph=true, but the device is cpu"):
        fit_debug(cfg_factory, tmp_path, "trainer.cuda_graph=true", "max_steps=1")
    trainer, *_ = fit_debug(cfg_factory, tmp_path / "auto", "max_steps=2")  # auto on CPU: eager, silently
    assert trainer.run_step is trainer.step_fn


@pytest.mark.parametrize("argv, environ, load, expected", [
    ([], {}, 0.2, (2, None)),
    (["-m", "launcher=joblib", "seed=0,1"], {}, 0.2, (1, None)),  # n_jobs 2 (the launcher's default) on 2 cores
    (["-m", "launcher=joblib", "hydra.launcher.n_jobs=-1"], {}, 0.2, (1, None)),  # -1: one job per core
    (["launcher=joblib", "hydra.launcher.n_jobs=2"], {}, 0.2, (2, None)),  # no -m: one run
    ([], {}, 1.6, (1, "PASSIVE")),  # busy: load > cores - 0.5; threads: the idle cores (0.4 -> at least 1)
    ([], {}, 1.4, (2, None)),
    (["trainer.threads=2"], {}, 3.0, (2, "PASSIVE")),  # asked for: kept, but passive on a busy machine
    (["trainer.threads=1"], {}, 0.2, (1, None)),
    (["trainer.threads=1"], {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE"}, 9.0, (2, "ACTIVE")),  # env wins
    (["-m", "trainer.threads=1,2"], {}, 0.2, (2, None)),  # swept: each job applies its own (apply_in_job)
])
def test_thread_policy(argv, environ, load, expected):
    from vae_cli.command_line import CommandLine
    from vae_cli.training.threads import choose

    policy = choose(CommandLine.parse(["vae-train", *argv]), environ, cores=2, load=load)
    assert (policy.threads, policy.wait_policy) == expected, policy.why


def test_the_load_is_what_runs_now_not_the_lagging_load_average():
    """A busy process beside this one counts at once (the 1-minute load average lags: it would still count a
    run that just ended, and the next run would train on one passive thread)."""
    import os
    import subprocess
    import sys
    import time

    from vae_cli.training.threads import runnable_others

    if not os.path.exists("/proc/loadavg"):
        pytest.skip("reads /proc/loadavg (Linux)")
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert runnable_others() >= 1
    finally:
        hog.kill()
        hog.wait()


def test_the_cli_sets_the_thread_policy_before_torch_loads_and_logs_it(tmp_path):
    """The real CLI in a subprocess: trainer.threads reaches torch, and libgomp sees OMP_WAIT_POLICY at load."""
    import os
    import subprocess
    import sys

    from clitools import TINY, env

    clean = {k: v for k, v in env().items() if not k.startswith(("OMP_", "MKL_", "VAE_CLI_THREAD"))}
    done = subprocess.run([sys.executable, "-m", "vae_cli", *TINY, "max_steps=2", "trainer.threads=1",
                           f"hydra.run.dir={tmp_path}"], env=clean, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [ln for ln in (tmp_path / "train.log").read_text().splitlines() if "threads:" in ln]
    assert len(lines) == 1 and "threads: 1 (trainer.threads=1" in lines[0], lines
    probe = "import vae_cli.training.threads as t, os; from vae_cli.command_line import CommandLine; " \
            "t.preset_environment(CommandLine.parse(['vae-train', 'trainer.threads=1'])); import torch; " \
            "print(torch.get_num_threads(), os.environ.get('OMP_NUM_THREADS'))"
    out = subprocess.run([sys.executable, "-c", probe], env=clean, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["1", "1"], out.stderr  # set before the import: torch's pool starts with 1
