"""Start-up checks that no single part owns: the top-level keys train.yaml declares, and rules that span parts
(the device and the step, the data and the batch or the likelihood).

Every part checks its own arguments, with the rules annotated on them (checks.py); the plan applies those
rules to the config before anything is built or loaded. Each failure is one `ConfigError` naming the key, the
offending value and what is allowed. Keys absent from the composed config are skipped.
"""
import errno
import importlib.resources
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vae_cli.checks import INT, NONNEG, OPT_POSITIVE_INT, POSITIVE_INT, Rule
from vae_cli.errors import ConfigError, UserError

SEED = Rule(lambda x: INT.ok(x) and -2**63 <= x < 2**64, "an integer in [-2**63, 2**64 - 1] (what torch can seed)")
RESUME = Rule(lambda x: x is None or (isinstance(x, (bool, str)) and x != ""), "true, false or a run dir / checkpoint path")

RULES = {"latent_dim": POSITIVE_INT, "beta": NONNEG, "seed": SEED, "max_steps": OPT_POSITIVE_INT,
         "max_epochs": OPT_POSITIVE_INT, "resume": RESUME}  # train.yaml's own keys


def validate_config(cfg: DictConfig) -> None:
    """The top-level keys and RULES; raises one ConfigError for the first bad value."""
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
    """Cross-part rules of the device: bf16 autocast runs on CUDA and on the CPU; trainer.cuda_graph=true needs a
    step that can be captured there (the device and the config decide it, so it is refused before data loads)."""
    if cfg.trainer.get("precision") == "bf16" and device.type not in ("cuda", "cpu"):
        raise ConfigError(f"trainer.precision=bf16 needs a CUDA device or the CPU; this run is on {device}")
    if cfg.trainer.get("precision") == "bf16":
        from vae_cli.build import target

        objective = target(cfg.objective)
        if not objective.bf16:
            raise ConfigError(f"trainer.precision=bf16: objective {objective.__name__} did not train to fp32's "
                              f"validation ELBO in bf16 (docs/performance.md); use trainer.precision=fp32 or auto")
    if cfg.trainer.get("cuda_graph") is True:  # torch-free module: the torch-side parts are imported here
        from vae_cli.training import distributed
        from vae_cli.training.step import graph_obstacle, refusal

        why = graph_obstacle(device, bool(cfg.trainer.get("compile")), distributed.world_size() > 1)
        if why:
            raise refusal(why)


def check_likelihood(model, data, choices: dict) -> None:
    """A binary likelihood (Bernoulli) needs binarizable images."""
    if model.likelihood.binary and not data.binarizable:
        raise ConfigError(f"likelihood={choices.get('likelihood', 'bernoulli')} needs binarizable greyscale "
                          f"images, but dataset={data.name} holds 8-bit colour images: use likelihood=discretized_logistic "
                          f"or likelihood=gaussian")


def validate_data(cfg: DictConfig, num_train: int, data_name: str) -> None:
    """Checks that need the dataset's size."""
    if cfg.trainer.batch_size > num_train:
        raise ConfigError(f"trainer.batch_size={cfg.trainer.batch_size} is larger than the {num_train} training "
                          f"examples of {data_name}; lower it")


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
