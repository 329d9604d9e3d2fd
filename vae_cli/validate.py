"""Start-up checks: every value a user types is checked before data is loaded or a step is spent.

Each failure is one `ConfigError` naming the key, the offending value and what is allowed. Keys absent
from the composed config (an option without that knob) are skipped.
"""
import errno
import importlib.resources
import math
import os
from numbers import Real
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vae_cli.errors import ConfigError, UserError


def _int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _num(x) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool) and math.isfinite(x)


# (predicate, what the value must be): shared by the rules below
POSITIVE_INT = (lambda x: _int(x) and x > 0, "a positive integer")
NONNEG_INT = (lambda x: _int(x) and x >= 0, "an integer >= 0")
POSITIVE = (lambda x: _num(x) and x > 0, "a finite number > 0")
NONNEG = (lambda x: _num(x) and x >= 0, "a finite number >= 0")
OPT_POSITIVE_INT = (lambda x: x is None or POSITIVE_INT[0](x), "a positive integer or null")
OPT_POSITIVE = (lambda x: x is None or POSITIVE[0](x), "a number > 0 or null")
INT = (_int, "an integer")
SEED = (lambda x: _int(x) and -2**63 <= x < 2**64, "an integer in [-2**63, 2**64 - 1] (what torch can seed)")
SIZES = (lambda x: isinstance(x, list) and all(POSITIVE_INT[0](v) for v in x), "a list of positive integers")
WIDTHS = (lambda x: SIZES[0](x) and len(x) > 0, "a non-empty list of positive integers (the last is the feature width)")
BOOL = (lambda x: isinstance(x, bool), "true or false")
RESUME = (lambda x: x is None or (isinstance(x, (bool, str)) and x != ""), "true, false or a run dir / checkpoint path")

RULES = {
    "latent_dim": POSITIVE_INT, "beta": NONNEG, "seed": SEED, "max_steps": OPT_POSITIVE_INT,
    "max_epochs": OPT_POSITIVE_INT, "resume": RESUME,
    "objective.weight.beta": NONNEG, "trainer.threads": (lambda x: x is None or POSITIVE_INT[0](x), "a positive integer or null"),
    "trainer.cuda_graph": (lambda x: x in (True, False, "auto"), "auto, true or false"),
    "optimizer.weight_decay": NONNEG, "lr_schedule.warmup_steps": NONNEG_INT, "lr_schedule.step_size": OPT_POSITIVE_INT, "objective.free_bits": NONNEG, "objective.num_samples": POSITIVE_INT,
    "trainer.batch_size": POSITIVE_INT, "trainer.lr": POSITIVE,
    "trainer.grad_clip": OPT_POSITIVE, "trainer.log_every": POSITIVE_INT, "trainer.eval_every": OPT_POSITIVE_INT,
    "trainer.eval_batch_size": POSITIVE_INT, "trainer.num_images": POSITIVE_INT,
    "trainer.keep_last": NONNEG_INT, "trainer.max_skips": POSITIVE_INT,
    "trainer.nonfinite": (lambda x: x in ("raise", "skip"), "raise or skip"),
    "dataset.split_seed": INT, "dataset.download": BOOL,
    "dataset.num_train": POSITIVE_INT, "dataset.num_val": POSITIVE_INT, "dataset.num_test": POSITIVE_INT,
    "dataset.num_classes": POSITIVE_INT, "dataset.binarizable": BOOL,
    "dataset.image_shape": (lambda x: isinstance(x, list) and len(x) == 3 and all(POSITIVE_INT[0](v) for v in x),
                            "a list [C, H, W] of three positive integers"),
    "likelihood.sigma": POSITIVE, "likelihood.min_sigma": POSITIVE,
    "schedule.warmup_steps": POSITIVE_INT, "schedule.start": (lambda x: _num(x) and 0 <= x <= 1, "in [0, 1]"),
    "posterior.min_scale": NONNEG, "prior.min_scale": NONNEG, "model.encoder.hidden_sizes": WIDTHS,
    "model.decoder.hidden_sizes": SIZES, "model.hidden_sizes": SIZES,
    "schedule.n_cycles": POSITIVE_INT, "schedule.ratio": (lambda x: _num(x) and 0 < x <= 1, "in (0, 1]"),
}


def validate_config(cfg: DictConfig) -> None:
    """Types and ranges of every known knob; raises one ConfigError for the first bad value."""
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"the config does not resolve: {one_line(e)}") from None
    for key, (ok, what) in RULES.items():
        node = plain
        for part in key.split("."):
            node = node.get(part, _ABSENT) if isinstance(node, dict) else _ABSENT
        if node is not _ABSENT and not ok(node):
            raise ConfigError(f"{key}={node!r} must be {what}")
    if plain.get("max_steps") is None and plain.get("max_epochs") is None:
        raise ConfigError("set max_steps or max_epochs")
    check_top_level_keys(plain)


_ABSENT = object()


def train_keys() -> set[str]:
    """The top-level keys vae-train reads: train.yaml's own keys and its config groups."""
    text = importlib.resources.files("vae_cli.configs").joinpath("train.yaml").read_text()
    train = OmegaConf.create(text)
    groups = {next(iter(d)).split(" ")[-1] for d in train.defaults if isinstance(d, (dict, DictConfig))}
    return (set(train.keys()) | groups) - {"defaults", "hydra"}


def check_top_level_keys(plain: dict) -> None:
    """A key added with +key=... that nothing reads (e.g. +lr=10 for trainer.lr) is refused, not ignored."""
    unknown = sorted(set(plain) - train_keys())
    if unknown:
        key = unknown[0]
        near = [k for k in _leaf_keys(plain) if k.split(".")[-1] == key and "." in k]
        hint = f"; did you mean {near[0]}=...?" if near else ""
        raise ConfigError(f"{key}={plain[key]!r}: vae-train has no top-level key {key!r}, nothing would read it{hint}")


def _leaf_keys(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        out += _leaf_keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
    return out


def check_device(cfg: DictConfig, device) -> None:
    """Cross-part rules of the device: bf16 autocast is a CUDA feature; trainer.cuda_graph=true needs a step
    that can be captured there (the device and the config decide it, so it is refused before data loads)."""
    if cfg.trainer.get("precision") == "bf16" and device.type != "cuda":
        raise ConfigError(f"trainer.precision=bf16 needs a CUDA device; this run is on {device}")
    if cfg.trainer.get("cuda_graph") is True:  # torch-free module: the torch-side parts are imported here
        from vae_cli.training import distributed
        from vae_cli.training.step import graph_obstacle, refusal

        why = graph_obstacle(device, bool(cfg.trainer.get("compile")), distributed.world_size() > 1)
        if why:
            raise refusal(why)


def validate_data(cfg: DictConfig, num_train: int) -> None:
    """Checks that need the dataset's size."""
    if cfg.trainer.batch_size > num_train:
        raise ConfigError(f"trainer.batch_size={cfg.trainer.batch_size} is larger than the {num_train} training "
                          f"examples of dataset={cfg.dataset.get('name', 'fake')}; lower it")


def check_writable(directory: Path) -> None:
    """Create `directory` and write + remove a probe file there, so a run never trains without a place to save."""
    probe = Path(directory) / f".write-test-{os.getpid()}"
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as e:
        reason = "a file is in the way" if Path(directory).is_file() else e.strerror or e
        raise UserError(f"cannot write checkpoints to {directory}: {reason} "
                        f"(choose another hydra.run.dir or free the disk)") from None


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def as_user_error(e: BaseException) -> UserError | None:
    """A UserError for exceptions a user's input caused, else None (build.make has unwrapped Hydra's wrapper)."""
    if isinstance(e, UserError):
        return e
    if isinstance(e, OmegaConfBaseException):
        return ConfigError(one_line(e))
    return None


DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EIO)


def disk_error(e: BaseException, run_dir) -> UserError | None:
    """A full, read-only or failing disk under a running run: one line naming the dir (checkpoints are written
    atomically, so those already there are intact), else None."""
    while e is not None and not isinstance(e, OSError):
        e = e.__cause__ or e.__context__
    if e is None or e.errno not in DISK_ERRORS:
        return None
    where = f" ({e.filename})" if e.filename else ""
    return UserError(f"cannot write to run dir {run_dir}{where}: {e.strerror or e}; the checkpoints already "
                     f"there are intact: free the disk, then continue with vae-train resume={run_dir}")
