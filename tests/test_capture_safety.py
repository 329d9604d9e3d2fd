"""Every training configuration a user can pick has a step that a CUDA graph can capture, checked on the CPU.

No GPU is needed: the real step, built by the real trainer as it is built for a capture (the capturable fused
Adam with a device-tensor lr), runs on the CPU under observers (tests/hazards.py). The step they watch is the
one `GraphedStep` captures: after the first eager step and two warm-up steps, with the gradients set to None
and torch.distributions' checks off. For each configuration: no op reads the device back or has a
data-dependent shape or copies host data in; the step keeps every tensor it holds (updates in place); and two
steps at different step values issue the same ops with the same arguments (nothing in the step depends on a
Python value that changes per step). Or the configuration declares why it cannot be captured (graph_obstacle),
naming the part, before anything is tried. What the CPU cannot show (syncs inside one CUDA kernel, the replay
itself) is for tests/test_cuda_graph.py on a GPU.
"""
import logging

import pytest
import torch
from conftest import make_cfg
from hazards import hazards, tensors_held, trace

from vae_cli.build import build_data, build_data_free, build_model, check_kinds, set_num_classes, set_run_length
from vae_cli.errors import ConfigError
from vae_cli.training.checkpoint import seed_everything
from vae_cli.training.meter import Meter
from vae_cli.training.trainer import Run
from vae_cli.training.vae_task import VAETask
from vae_cli.training.step import capture, first_error, graph_obstacle, no_distribution_checks
from vae_cli.validate import validate_config

STEPS = 40
TINY = ["trainer=debug", "dataset.image_shape=[1,8,8]", "latent_dim=4", "trainer.batch_size=16",
        "trainer.num_images=4", f"max_steps={STEPS}"]
MLP = ["model.encoder.hidden_sizes=[32]", "model.decoder.hidden_sizes=[32]"]
GRID = ["model.encoder.channels=[4,8]", "model.decoder.channels=[8,4]"]
LADDER = ["model.lower_dims=[6]", "model.encoder.hidden_sizes=[16]", "model.encoder.block_sizes=[[16]]",
          "model.decoder.hidden_sizes=[16]"]
SIZES = {"mlp": MLP, "cvae": MLP, "conv": [*GRID, "model.encoder.hidden=32", "model.decoder.hidden=32"],
         "gumbel": [*MLP, "posterior.num_latents=4", "posterior.num_classes=5"],
         "vqvae": [*GRID, "posterior.num_codes=8", "posterior.code_dim=4"],
         "hierarchical": [*LADDER, "model.hidden_sizes=[16]"], "ladder": [*LADDER, "model.td_sizes=[16]"]}
SIZES["cvae_conv"] = SIZES["conv"]
MODELS = list(SIZES)
FAMILIES = ["mlp", "cvae", "hierarchical", "ladder"]  # distinct latent_terms code paths (conv = mlp's)
OBJECTIVES = ["beta_vae", "kl_annealing", "free_bits", "multi_sample_elbo", "iwae"]
POSTERIORS, PRIORS = ["gaussian", "mixture", "planar", "iaf"], ["standard_normal", "mixture", "vamp"]
FLOWS = {"planar", "iaf"}  # prior=vamp refuses them (validate: q(z|u) at arbitrary z)
EXPERIMENTS = ["iwae_paper_1layer", "iwae_paper_2layer", "iwae_paper_tanh_1layer", "iwae_paper_tanh_2layer",
               "vae_paper_1layer", "vae_paper_2layer", "vae_paper_tanh_1layer", "vae_paper_tanh_2layer",
               "vamp_1layer"]
TRAINER = ["trainer.grad_clip=1.0", "trainer.nonfinite=skip", "trainer.precision=bf16"]
CASES = [
    *[[f"model={m}"] for m in MODELS],
    ["model=vqvae", "posterior.ema=true"], ["model=vqvae", "posterior.restart_threshold=0"],
    ["model=gumbel", "model.hard=true"], ["model=gumbel", "objective.temperature.rate=0"],
    ["model=cvae", "model.condition.embed_dim=4"], ["model=ladder", "model.kl_balance_steps=5"],
    ["model=ladder", "model.kl_balance_steps=5", "objective=iwae"],
    *[[f"model={m}", f"objective={o}"] for m in FAMILIES for o in OBJECTIVES],
    *[[f"posterior={q}", f"prior={p}", *(["prior.num_pseudo=5"] if p == "vamp" else [])] for q in POSTERIORS
      for p in PRIORS if not (q in FLOWS and p == "vamp")],
    ["model=ladder", "posterior=iaf", "prior=mixture"], ["model=hierarchical", "posterior=mixture", "prior=vamp",
                                                          "prior.num_pseudo=5"],
    ["model=cvae", "posterior=planar"], ["model=conv", "prior=vamp", "prior.num_pseudo=5"],
    *[["likelihood=gaussian", f"likelihood.sigma_mode={s}"] for s in ("fixed", "global")],
    *[[f"model={m}", "likelihood=gaussian", "likelihood.sigma_mode=per_pixel"] for m in MODELS],
    ["schedule=linear"], ["schedule=cyclical"], ["objective=free_bits", "schedule=cyclical"],
    ["objective=iwae", "schedule=linear", "schedule.warmup_steps=20"], ["model=gumbel", "schedule=cyclical"],
    *[[f"lr_schedule={s}"] for s in ("cosine", "step", "iwae_paper")],
    ["lr_schedule=cosine", "lr_schedule.warmup_steps=10"],
    *[[o] for o in TRAINER], *[[f"model={m}", *TRAINER] for m in MODELS],
    *[[f"experiment={e}"] for e in EXPERIMENTS],
    ["trainer.compile=true"],
]


def config(*overrides: str):
    """The run's config with tiny sizes on fake 8x8 data, checked as vae-train checks it."""
    model_name = next((o.split("=")[1] for o in overrides if o.startswith("model=")), "mlp")
    sizes = [] if any(o.startswith("experiment=") for o in overrides) else SIZES[model_name]
    cfg = make_cfg(*TINY, *sizes, *overrides)
    validate_config(cfg)
    check_kinds(cfg)
    return cfg


def build(cfg):
    """-> the trainer with the step built as for a capture, on the CPU (vae-train's build order)."""
    seed_everything(cfg.seed)
    data = build_data(cfg)
    set_run_length(cfg, len(data.train))
    set_num_classes(cfg, data.num_classes)
    objective, trainer = build_data_free(cfg)
    model = build_model(cfg, data.image_shape)
    trainer.build(VAETask(model, objective, data), torch.device("cpu"), capturable=True)
    return trainer


def warm(trainer):
    """The first (eager) step and the two warm-up steps GraphedStep runs, then what it does before capturing:
    gradients to None; the next batch's indices in the static buffer -> the step function."""
    for _ in range(3):
        trainer._train_step()
    fn = trainer.step_fn
    fn.opt.zero_grad(set_to_none=True)
    fn.idx.copy_(next(trainer.batches))
    return fn


def report(found) -> str:
    return "\n".join(f"  {op}: {why}\n    at {line}" for op, why, line in dict.fromkeys(found))


@pytest.mark.slow
@pytest.mark.parametrize("overrides", CASES, ids=lambda o: " ".join(o))
def test_step_holds_nothing_a_cuda_graph_capture_forbids(overrides):
    cfg = config(*overrides)
    why = graph_obstacle(torch.device("cuda"), cfg.trainer.compile, False)
    if why is not None:  # declared before trying: `auto` logs it, `true` refuses it in one line
        assert "trainer.compile" in why, why
        return
    trainer = build(cfg)
    fn = warm(trainer)
    held = tensors_held(fn)
    with no_distribution_checks():
        found = hazards(fn)
        assert not found, f"the step would fail a CUDA graph capture:\n{report(found)}"
        assert tensors_held(fn) == held, "the step rebinds state it holds: a replay would use the old tensors"
        fn.idx.copy_(next(trainer.batches))
        first = trace(fn)
        fn.step.fill_(STEPS - 2)  # another phase of every schedule (beta, temperature, lr, KL balancing)
        fn.idx.copy_(next(trainer.batches))
        later = trace(fn)
    assert first == later, next((a, b) for a, b in zip(first, later) if a != b) if len(first) == len(later) \
        else f"{len(first)} ops, then {len(later)}"


def test_cuda_graph_true_with_a_declared_obstacle_is_one_line_before_data_loads(tmp_path):
    """The config alone decides (the device, trainer.compile): refused before the data is read (the data dir does
    not exist), and nothing is written."""
    from clitools import one_error_line, run

    out = run("dataset=mnist", f"data_dir={tmp_path / 'none'}", "dataset.download=false", "device=cpu",
              "trainer.cuda_graph=true", f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode == 2
    assert "trainer.cuda_graph=true, but the device is cpu" in one_error_line(out.stderr)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_declared_obstacle_is_one_log_line_under_auto_and_one_error_under_true(caplog):
    """capture() decides from graph_obstacle before touching CUDA, so this runs on the CPU too."""
    caplog.set_level(logging.INFO, logger="vae_cli")
    fn = warm(build(config()))
    assert capture(fn, None, torch.device("cuda"), "auto", compile=True) is fn
    assert [r.getMessage() for r in caplog.records] == [
        f"cuda_graph: eager steps: {graph_obstacle(torch.device('cuda'), True, False)}"]
    with pytest.raises(ConfigError, match=r"^trainer.cuda_graph=true, but trainer.compile=true: .*; use trainer"):
        capture(fn, None, torch.device("cuda"), True, compile=True)
    caplog.clear()
    assert capture(fn, None, torch.device("cpu"), "auto") is fn and not caplog.records  # off CUDA: silent


@pytest.mark.skipif(torch.cuda.is_available(), reason="the capture must fail: no CUDA device")
def test_a_capture_that_fails_falls_back_to_eager_with_one_line_naming_the_part(caplog):
    """Without a CUDA device GraphedStep fails in its set-up: auto trains on eagerly and says so once, true stops
    with one error; the step's state is as before."""
    caplog.set_level(logging.INFO, logger="vae_cli")
    trainer = build(config())
    fn = warm(trainer)
    before = [t.clone() for t in fn.state_tensors(trainer.model)]
    assert capture(fn, trainer.model, torch.device("cuda"), "auto") is fn
    line, = [r.getMessage() for r in caplog.records]
    assert line.startswith("cuda_graph: eager steps: the capture's set-up (side stream, CUDA RNG state) could not "
                           "be captured ("), line
    with pytest.raises(ConfigError, match=r"^trainer.cuda_graph=true, but the capture's set-up .* could not be"):
        capture(fn, trainer.model, torch.device("cuda"), True)
    assert all(torch.equal(a, b) for a, b in zip(before, fn.state_tensors(trainer.model)))
    fn()  # and the eager step still runs
    assert int(fn.step) == 4


def test_first_error_is_the_cause_not_the_capture_end_that_follows_it():
    try:
        try:
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")
        finally:
            raise RuntimeError("CUDA error: operation failed due to a previous error during capture")
    except RuntimeError as e:
        assert "not permitted" in str(first_error(e))
    try:
        raise ValueError("no cause") from None
    except ValueError as e:
        assert first_error(e) is e


def test_between_steps_the_loop_keeps_every_tensor_the_step_holds(tmp_path):
    """Logging (meter means and reset), validation, checkpoints and the non-finite guard's checks run between
    replays: they must read and reset the captured step's tensors in place, never replace them."""
    cfg = config("objective=iwae", "trainer.nonfinite=skip", "max_steps=6", "trainer.log_every=2",
                 "trainer.eval_every=3", "trainer._target_=hazards.WatchedTrainer.from_knobs")
    seed_everything(cfg.seed)
    data = build_data(cfg)
    set_run_length(cfg, len(data.train))
    objective, trainer = build_data_free(cfg)
    model = build_model(cfg, data.image_shape)
    trainer.fit(VAETask(model, objective, data), torch.device("cpu"), Run(tmp_path, {}))
    assert len(list((tmp_path / "checkpoints").glob("step_*.pt"))) == 2 and int(trainer.step_fn.step) == 6
    assert "step_fn.meter.extra.ess" in trainer.held_at_capture
    assert tensors_held(trainer.step_fn) == trainer.held_at_capture


def test_the_observers_see_what_a_capture_forbids():
    """Each hazard kind is seen and named at its line; the capture-safe spelling of each is not."""
    x, reps = torch.arange(6.0), torch.full((6,), 2)
    forbidden = [("_local_scalar_dense", lambda: x.sum().item()), ("_local_scalar_dense", lambda: bool(x.sum() > 0)),
                 ("index", lambda: x[x > 2]), ("nonzero", lambda: torch.nonzero(x)),
                 ("_unique2", lambda: torch.unique(x)), ("bincount", lambda: torch.bincount(reps, minlength=8)),
                 ("masked_select", lambda: x.masked_select(x > 2)),
                 ("repeat_interleave", lambda: torch.repeat_interleave(x, reps)),
                 ("lift_fresh", lambda: x + torch.tensor(1.0)), ("lift_fresh", lambda: x[[0, 1]]),
                 ("Tensor.tolist", lambda: x.tolist()), ("Tensor.cpu", lambda: x.cpu()),
                 ("torch.zeros", lambda: x + torch.zeros(6)), ("histc", lambda: torch.histc(x, bins=4))]
    for name, fn in forbidden:
        found = hazards(fn)
        assert any(name in op for op, _, _ in found), (name, found)
        assert all(line.startswith(f"{__file__}:") for _, _, line in found), found  # the lambda's line
    allowed = [lambda: torch.where(x > 2, x, 0.0), lambda: torch.zeros(6, device=x.device),
               lambda: torch.repeat_interleave(x, reps, output_size=12), lambda: x.new_full((), 0.5),
               lambda: torch.zeros(8, device=x.device).scatter_add_(0, reps, x), lambda: x[reps],
               lambda: x.repeat_interleave(2), lambda: torch.histc(x, bins=4, min=0, max=6)]
    assert [hazards(fn) for fn in allowed] == [[]] * len(allowed)


def test_traces_differ_when_a_python_value_changes_per_step_and_held_state_is_rebound():
    s, calls = torch.zeros(()), iter(range(5))
    assert trace(lambda: torch.arange(3.0) * next(calls)) != trace(lambda: torch.arange(3.0) * next(calls))
    assert trace(lambda: torch.arange(3.0) * s.add_(1)) == trace(lambda: torch.arange(3.0) * s.add_(1))
    meter = Meter(torch.device("cpu"))
    held = tensors_held(meter)
    meter.reset()
    assert tensors_held(meter) == held
    meter.sums = meter.sums + 1
    assert tensors_held(meter) != held
