"""Resuming: which checkpoint to continue from, and whether it fits this config.

`resume=true`: continue from the newest good checkpoint in this run's dir, or start at step 0 when there
is none (the same command serves a first start and every requeue). `resume=PATH` (a run dir or a
checkpoint file): continue that run, in its dir, with its original overrides; a bad PATH is an error.
"""
import logging
from pathlib import Path

from omegaconf import OmegaConf, open_dict

from vae_cli import __version__
from vae_cli.errors import ConfigError, UserError

log = logging.getLogger("vae_cli")

# Values the first start fixes for the whole run: a resumed (or extended) run keeps the stored value unless the
# user typed another one. schedule.total_steps sets the cyclical schedule's period (total_steps / n_cycles):
# extending a cyclical run with a larger max_steps keeps that period and simply runs more cycles.
RUN_KEYS = ("resume", "max_steps", "max_epochs", "device", "data_dir")  # top-level keys a resumed run may change;
# the others are the constructor arguments marked RESUMABLE (checks.py, build.resumable_keys)
FIXED_BY_FIRST_START = ("schedule.total_steps",)
FALSE = ("false", "False", "null", "None", "")
TRUE = ("true", "True")


def step_path(ckpt_dir: Path, step: int) -> Path:
    return Path(ckpt_dir) / f"step_{step:09d}.pt"


def step_files(ckpt_dir: Path) -> list[Path]:
    """Step-numbered checkpoints, newest first."""
    return sorted(Path(ckpt_dir).glob("step_*.pt"), reverse=True)


def prune(ckpt_dir: Path, keep_last: int) -> None:
    """Keep the newest `keep_last` step-numbered checkpoints (last.pt and best.pt are separate files)."""
    for old in step_files(ckpt_dir)[keep_last:]:
        old.unlink(missing_ok=True)


def wants_resume(resume) -> bool:
    return resume is True or (isinstance(resume, str) and resume not in FALSE)


def find_checkpoint(run_dir: Path, resume) -> tuple[dict, Path] | None:
    """The checkpoint to resume from, or None to start fresh. A file named by `resume` must load;
    otherwise the newest step file, then last.pt, falling back past corrupt ones with a warning."""
    from vae_cli.training.checkpoint import load_checkpoint  # torch: only once a run starts

    explicit = isinstance(resume, str) and resume not in TRUE
    target = Path(resume) if explicit else Path(run_dir)
    if target.is_file():
        return load_checkpoint(target), target
    ckpt_dir = target if target.name == "checkpoints" else target / "checkpoints"
    for path in [*step_files(ckpt_dir), ckpt_dir / "last.pt"]:
        if not path.is_file():
            continue
        try:
            return load_checkpoint(path), path
        except UserError as e:
            log.warning(f"skipping a bad checkpoint: {e}")
    if explicit or any(ckpt_dir.glob("*.pt")):
        raise UserError(f"resume={resume}: no readable checkpoint in {ckpt_dir}")
    log.info(f"resume=true: no checkpoint in {ckpt_dir} yet; starting at step 0")
    return None


def keep_first_start(cfg, state: dict) -> None:
    """FIXED_BY_FIRST_START keys that still follow their default interpolation take the checkpoint's values."""
    stored = _flatten(state.get("config", {}))
    for key in FIXED_BY_FIRST_START:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if key in stored and node is not None and leaf in node and OmegaConf.is_interpolation(node, leaf):
            with open_dict(cfg):
                OmegaConf.update(cfg, key, stored[key], merge=False)


def check_resumable(state: dict, path: Path, config: dict, may_change: tuple[str, ...]) -> None:
    """The checkpoint must come from this version (major.minor) and this config (up to the `may_change` keys and
    what lies under them: plan.Plan.may_change), and the run must not end before the checkpoint's step."""
    step, max_steps = int(state.get("step", 0)), config.get("max_steps")
    if isinstance(max_steps, int) and max_steps < step:
        raise ConfigError(f"max_steps={max_steps} is below step {step} of checkpoint {path}: to train on, set "
                          f"max_steps above {step}; to branch from an earlier step, resume=<its step_*.pt file>")
    version = str(state.get("version", "unknown"))
    if version.split(".")[:2] != __version__.split(".")[:2]:
        from vae_cli.training.checkpoint import release_name  # torch loads lazily
        raise UserError(f"checkpoint {path} was written by vae-cli {version}; this is {__version__}, which cannot "
                        f"resume it (CHANGELOG.md says what changed): resume it with {release_name(version)}, "
                        f"or start a new run (resume=false)")
    old, new = _flatten(state["config"]), _flatten(config)
    changed = [k for k in sorted(old.keys() | new.keys()) if old.get(k, "<absent>") != new.get(k, "<absent>")]
    diffs = [_change(k, old, new) for k in changed if not _under(k, may_change)]
    if diffs:
        raise ConfigError(f"checkpoint {path} was trained with another config ({'; '.join(diffs[:4])}"
                          f"{'; ...' if len(diffs) > 4 else ''}): use the run's own overrides, or a new run dir")
    allowed = [_change(k, old, new) for k in changed if k not in ("resume", "trainer.max_steps")]
    if allowed:
        log.info(f"resuming with changed settings: {'; '.join(allowed)}")
    if isinstance(max_steps, int) and max_steps == step:
        log.info(f"the run already reached max_steps={max_steps} at step {step}: nothing left to train "
                 f"(to train on, set max_steps above {step})")


def _under(key: str, paths: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in paths)


def _change(key: str, old: dict, new: dict) -> str:
    return f"{key}: {old.get(key, '<absent>')!r} -> {new.get(key, '<absent>')!r}"


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + ".") if isinstance(v, dict) and v else {key: v})
    return out
