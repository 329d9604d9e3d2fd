"""vae-eval ckpt=<sweep dir>: every run under it, one after another; a run already evaluated with the same
settings on the same checkpoint step is skipped."""
import json
import logging
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from vae_cli.apps.common import output_dir, resolve_checkpoint
from vae_cli.errors import UserError

log = logging.getLogger("vae_cli")
SETTINGS = ("split", "num_examples", "k", "seed", "kl_threshold", "quality", "quality_samples")  # what the numbers depend on


def settings(cfg: DictConfig) -> dict:
    return {k: cfg.get(k) for k in SETTINGS}


def sweep_runs(cfg: DictConfig) -> list[Path]:
    """The run dirs under ckpt= when it names a folder without checkpoints of its own; else []."""
    path = Path(str(cfg.get("ckpt") or "")).expanduser()
    if not cfg.get("ckpt") or not path.is_dir() or path.name == "checkpoints" or any(path.glob("checkpoints/*.pt")):
        return []
    return sorted({p.parent.parent for p in path.rglob("*.pt") if p.parent.name == "checkpoints"})


def run_eval_sweep(cfg: DictConfig, runs: list[Path], evaluate) -> list[dict]:
    """`evaluate(cfg)` for each run (out=DIR: DIR/<run's path in the sweep>); one line per skipped or failed run."""
    root = Path(str(cfg.ckpt)).expanduser()
    records, failed = [], []
    for i, run in enumerate(runs, 1):
        one = OmegaConf.merge(cfg, {"ckpt": str(run), "out": str(Path(str(cfg.out)) / run.relative_to(root))
                                    if cfg.get("out") else None})
        done = evaluated(one, run)
        if done is not None:
            log.info(f"run {i} of {len(runs)}: {run}: already evaluated with these settings ({done}); skipped")
            continue
        log.info(f"run {i} of {len(runs)}: {run}")
        try:
            records.append(evaluate(one))
        except UserError as e:
            print(f"vae-eval: error: {run}: {e}", file=sys.stderr)
            failed.append(run.name)
    if failed:
        raise UserError(f"{len(failed)} of {len(runs)} runs could not be evaluated: {', '.join(failed)}")
    return records


def evaluated(cfg: DictConfig, run: Path) -> Path | None:
    """The metrics.json of an evaluation of this run's checkpoint (same file, same step) with these settings."""
    from vae_cli.training.rundir import checkpoint_step

    ckpt = resolve_checkpoint(run)
    metrics = output_dir(cfg, ckpt, f"eval-{ckpt.stem}")[0] / "metrics.json"
    try:
        old = json.loads(metrics.read_text())
    except (OSError, ValueError):
        return None
    same = old.get("settings") == settings(cfg) and old.get("checkpoint") == str(ckpt)
    return metrics if same and old.get("step") == checkpoint_step(ckpt) else None
