"""Helpers for sweep launchers: an OmegaConf resolver that spreads parallel jobs over the CUDA devices, and the
per-job records behind the summary line a sweep ends with."""
import contextlib
import json
import sys
import traceback
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from vae_cli import gc_pause


def gpu_for_job(job_num=None) -> str:
    """Job N of a sweep -> cuda:(N mod device count) when several devices are visible, else auto.
    Without an argument, N is the running Hydra job's number (0 outside Hydra)."""
    if job_num is None:
        job_num = HydraConfig.get().job.get("num", 0) if HydraConfig.initialized() else 0
    import torch  # here, not at import: `vae-train --help` and a refused start do without torch

    count = torch.cuda.device_count()
    return f"cuda:{int(job_num) % count}" if count > 1 else "auto"


def register_resolvers() -> None:
    """Idempotent; called by the CLI in every process that runs a job (joblib workers included)."""
    if not OmegaConf.has_resolver("gpu_for_job"):
        OmegaConf.register_new_resolver("gpu_for_job", gpu_for_job)


# Sweep bookkeeping: every job writes one record to <sweep dir>/.job-<num>.json (from whichever process runs it:
# joblib workers too); the SweepSummary callback, in the launching process, reads them all at the end.


def record_job(hydra_cfg, error: BaseException | None, internal: bool = False) -> str:
    """Record this job's outcome (a no-op outside a sweep); for a failure, write <job dir>/error.txt and return
    the one line that names the job."""
    from hydra.types import RunMode

    if hydra_cfg.mode != RunMode.MULTIRUN:
        return ""
    job_dir = Path(hydra_cfg.runtime.output_dir)
    swept = _swept_keys(Path(hydra_cfg.sweep.dir))
    mine = [o for o in hydra_cfg.overrides.task if swept is None or o.split("=", 1)[0].lstrip("+~") in swept]
    name = f"job {hydra_cfg.job.num} ({' '.join(mine) or 'no overrides'})"
    message = ""
    if error is None:
        (job_dir / "error.txt").unlink(missing_ok=True)  # a re-run that passed: no stale error
    else:
        detail = "".join(traceback.format_exception(error)) if internal else str(error)
        message = f"{name}: {' '.join(str(error).split()) or type(error).__name__}"
        if internal:
            message += f" ({type(error).__name__}; traceback in {job_dir / 'error.txt'})"
        with contextlib.suppress(OSError):
            (job_dir / "error.txt").write_text(detail + "\n")
    record = {"num": int(hydra_cfg.job.num), "name": name, "dir": str(job_dir), "ok": error is None, "error": message,
              "overrides": list(hydra_cfg.overrides.task)}  # vae-compare's keys for a job that left no .hydra/
    with contextlib.suppress(OSError):
        (Path(hydra_cfg.sweep.dir) / f".job-{hydra_cfg.job.num}.json").write_text(json.dumps(record))
    return message


def _swept_keys(sweep_dir: Path) -> set[str] | None:
    """The keys the sweep varies (latent_dim=0,8 -> latent_dim), read from Hydra's multirun.yaml; None if unknown."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        given = OmegaConf.load(sweep_dir / "multirun.yaml").hydra.overrides.task
        parsed = OverridesParser.create().parse_overrides(list(given))
    except Exception:  # no multirun.yaml (another sweeper), or one Hydra cannot parse: name every override
        return None
    return {o.key_or_group for o in parsed if o.is_sweep_override()}


class SweepSummary(Callback):
    """After a sweep: one line, `N of M jobs passed; failed: ...`, then vae-compare's best rows, and exit status 2
    when a job failed (Hydra hands no result of a sweep back to the command that started it, so its end hook
    sets the status)."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        gc_pause.resume()  # a sweep's process lives as long as its jobs (a launcher's parent runs none of them)
        for old in Path(config.hydra.sweep.dir).glob(".job-*.json"):  # a re-run counts its own jobs only
            old.unlink(missing_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        found = Path(config.hydra.sweep.dir).glob(".job-*.json")
        records = sorted((json.loads(p.read_text()) for p in found), key=lambda r: r["num"])
        failed = [r for r in records if not r["ok"]]
        line = f"vae-train: sweep: {len(records) - len(failed)} of {len(records)} jobs passed"
        if failed:
            line += "; failed: " + "; ".join(f"{r['name']} (see {r['dir']}/error.txt)" for r in failed)
        print(line, file=sys.stderr)
        print(best_rows(config.hydra.sweep.dir), end="", file=sys.stderr)
        if failed:
            raise SystemExit(2)  # the exit status of a user's error (cli.EXIT_USER_ERROR)


def best_rows(sweep_dir: str) -> str:
    """vae-compare's best rows for the summary; a sweep never fails for want of its table."""
    from vae_cli.compare.cli import sweep_summary
    from vae_cli.errors import UserError

    try:
        return sweep_summary(sweep_dir)
    except UserError:  # no run dir (every job refused before it started): the line above says why
        return ""
    except Exception as e:
        return f"vae-train: no comparison table ({type(e).__name__}: {e})\n"
