"""Run-dir ownership: one process per run dir, never a new run over an old one, and nothing written before
the checks pass.

A run dir holds one run. `claim` takes an exclusive OS lock on it (fcntl.flock on `<run dir>/.lock`, released
by the kernel when the process ends, even by SIGKILL) and refuses a fresh start in a dir that already holds
checkpoints. Until `accept` is called, after every start-up check passed, the run dir is left as it was:
log records are held in memory, Hydra's `.hydra/` files are not written (train.yaml sets
`hydra.output_subdir: null`; `accept` writes them), and newer checkpoints of an abandoned branch stay put.
"""
import contextlib
import errno
import fcntl
import logging
import logging.handlers
import os
import socket
import threading
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from vae_cli.errors import UserError
from vae_cli.training.resume import step_files

log = logging.getLogger("vae_cli")
LOCK_NAME = ".lock"
HYDRA_DIR = ".hydra"
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's job-log format


def existing_dirs(directory: str | Path | None) -> frozenset[Path]:
    """`directory` and its ancestors that exist now, before the CLI or Hydra creates the rest: a refused start
    keeps them (`claim`'s `existed`)."""
    if directory is None:
        return frozenset()
    path = Path(directory).expanduser().absolute()
    return frozenset(p for p in (path, *path.parents) if p.is_dir())


def lock(run_dir: Path):
    """An exclusive lock on `run_dir` for as long as the returned file stays open; one UserError naming the
    holder's PID when another process has it."""
    path = Path(run_dir) / LOCK_NAME
    f = open(path, "a+")
    f.created = f.tell() == 0  # a new lock file: a refused start removes it again
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise UserError(f"cannot lock run dir {run_dir}: {e.strerror or e}") from None
        raise UserError(f"run dir {run_dir} is in use by {holder}; wait for it to end, or choose another "
                        f"hydra.run.dir") from None
    f.seek(0)
    f.truncate()
    f.write(f"PID {os.getpid()} on {socket.gethostname()}\n")
    f.flush()
    return f


def owns_run_dir() -> bool:
    """False for torchrun ranks > 0: rank 0 alone locks and writes the run dir."""
    from vae_cli.training.distributed import launched_by_torchrun

    return not launched_by_torchrun() or os.environ["RANK"] == "0"


def check_owner(run_dir: Path, resume, sweep: bool = False) -> None:
    """A fresh start (resume=false) in a dir that already holds checkpoints would mix two runs: refuse it."""
    from vae_cli.training.resume import wants_resume

    found = sorted((Path(run_dir) / "checkpoints").rglob("*.pt"))
    if found and not wants_resume(resume):
        ways = ("re-run the sweep with resume=true (same hydra.sweep.dir) to continue its jobs, or choose "
                "another hydra.sweep.dir") if sweep else (f"continue it with `vae-train resume={run_dir}`, or start "
                                                          f"a new run in another hydra.run.dir")
        raise UserError(f"run dir {run_dir} already holds a run ({found[0].name} ...): {ways}")


class HeldLog(logging.handlers.MemoryHandler):
    """Holds the log records of a start until it is accepted; they then go to train.log, in order."""

    def __init__(self):
        super().__init__(capacity=10**9, flushLevel=logging.CRITICAL + 1)

    def shouldFlush(self, record) -> bool:
        return self.target is not None


class QuietFileHandler(logging.FileHandler):
    """train.log; a failed write (a full disk) drops the record instead of printing a traceback to stderr."""

    def handleError(self, record) -> None:
        self.failed = True


class RunDir:
    """One claimed run dir: `accept(resume)` once every check passed; `close()` releases the lock."""

    def __init__(self, run_dir: Path, task_cfg: DictConfig, hydra_cfg: DictConfig | None, main: bool = True):
        self.path, self.main, self.file = Path(run_dir), main, None
        self.task_cfg, self.hydra_cfg = OmegaConf.create(OmegaConf.to_container(task_cfg)), hydra_cfg
        self.lock = lock(self.path) if main else None  # first: a refused lock leaves no handler behind
        self.held = HeldLog()
        self.held.setFormatter(logging.Formatter(LOG_FORMAT))
        if main:  # torchrun ranks > 0 write no train.log
            logging.getLogger().addHandler(self.held)

    def accept(self, resume: tuple[dict, Path] | None = None) -> None:
        """Every check passed: retire a newer abandoned branch, write .hydra/, start train.log."""
        if not self.main:
            return
        if resume is not None:
            retire_newer(resume[0], resume[1], self.path / "checkpoints")
        if self.hydra_cfg is not None:
            write_hydra_files(self.path / HYDRA_DIR, self.task_cfg, self.hydra_cfg)
        self.file = QuietFileHandler(self.path / "train.log")
        self.file.setFormatter(logging.Formatter(LOG_FORMAT))
        self.held.setTarget(self.file)
        self.held.flush()

    def close(self) -> None:
        logging.getLogger().removeHandler(self.held)
        self.held.close()
        if self.file is not None:
            self.file.close()
        if self.lock is not None:
            if self.file is None and self.lock.created:  # a refused start in a new dir leaves nothing behind
                (self.path / LOCK_NAME).unlink(missing_ok=True)
            self.lock.close()  # releases the flock


@contextlib.contextmanager
def claim(run_dir: Path, task_cfg: DictConfig, hydra_cfg: DictConfig | None = None, main: bool = True,
          existed: frozenset[Path] = frozenset()):
    """Lock `run_dir` and check it may take this start (see the module doc); yields the RunDir. existed: the dirs
    that were there before this process made any (existing_dirs); a refused start never removes them."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    # made for this start (nothing is written before accept): not a dir the user had, even an empty one
    fresh = not any(Path(run_dir).iterdir()) and Path(run_dir).absolute() not in existed
    rd = RunDir(run_dir, task_cfg, hydra_cfg, main)
    hook, threading.excepthook = threading.excepthook, _quiet_disk_errors(threading.excepthook)
    try:
        if main:
            check_owner(run_dir, task_cfg.get("resume"), sweep=not single_run(hydra_cfg))
        yield rd
    finally:
        threading.excepthook = hook
        rd.close()
        if fresh and main and rd.file is None and single_run(hydra_cfg):  # a refused start: remove its empty dir
            remove_empty(Path(run_dir), existed)  # (a failed sweep job keeps its dir: error.txt goes there)


def single_run(hydra_cfg) -> bool:
    from hydra.types import RunMode

    return hydra_cfg is None or hydra_cfg.mode != RunMode.MULTIRUN


def remove_empty(run_dir: Path, existed: frozenset[Path] = frozenset()) -> None:
    """Remove `run_dir` if it holds nothing but empty dirs, then its parent (outputs/<date>/) if that is empty
    now; never the current dir, nor a dir in `existed` (there before this process)."""
    here = Path.cwd().resolve()
    if any(p.is_file() for p in run_dir.rglob("*")) or run_dir.resolve() in (here, *here.parents):
        return
    for d in sorted(run_dir.rglob("*"), reverse=True):
        d.rmdir()
    run_dir.rmdir()
    with contextlib.suppress(OSError):  # not empty: another run's date dir
        if run_dir.parent.resolve() != Path.cwd().resolve() and run_dir.parent.absolute() not in existed:
            run_dir.parent.rmdir()


def _quiet_disk_errors(default):
    """TensorBoard's writer thread dies on a full disk with a traceback; the main thread re-raises the same
    OSError at its next write, and the CLI prints that as one line. Other thread errors print as usual."""
    def hook(args) -> None:
        if not isinstance(args.exc_value, OSError):
            default(args)
    return hook


def write_hydra_files(folder: Path, task_cfg: DictConfig, hydra_cfg: DictConfig) -> None:
    """config.yaml, hydra.yaml and overrides.yaml as Hydra writes them; an earlier accepted start whose files
    differ keeps its copies in .hydra/attempt-<time>/, so the first start's config is never lost."""
    files = {"config.yaml": OmegaConf.to_yaml(task_cfg), "hydra.yaml": OmegaConf.to_yaml({"hydra": hydra_cfg}),
             "overrides.yaml": OmegaConf.to_yaml(hydra_cfg.overrides.task)}
    folder.mkdir(parents=True, exist_ok=True)
    old = {name: (folder / name).read_text() for name in files if (folder / name).is_file()}
    if old and _what_runs(old) != _what_runs(files):
        keep = folder / f"attempt-{time.strftime('%Y%m%d-%H%M%S')}"
        keep.mkdir(exist_ok=True)
        for name, text in old.items():
            (keep / name).write_text(text)
    for name, text in files.items():
        tmp = folder / f"{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, folder / name)


def _what_runs(files: dict) -> list[str]:
    """The overrides that set what a start trains (the resume= line only says how it was started)."""
    return [ln for ln in files.get("overrides.yaml", "").splitlines() if not ln.startswith("- resume=")]


def checkpoint_step(path: Path) -> int | None:
    """The step a checkpoint file holds (read lazily), or None when it cannot be read."""
    import torch  # here, not at import: the CLI's argument checks run before torch loads

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["step"])
    except Exception:  # corrupt, truncated, not ours: it cannot be resumed either
        return None


def retire_newer(state: dict, resumed: Path, ckpt_dir: Path) -> Path | None:
    """Branching from an older checkpoint: move the files of the abandoned later steps (and an unreadable
    last.pt / best.pt) to checkpoints/abandoned-<time>/, so that "newest" means the branch in use. Nothing is
    deleted. Returns the folder, or None when nothing was newer."""
    step = int(state["step"])
    candidates = [p for p in [*step_files(ckpt_dir), ckpt_dir / "last.pt", ckpt_dir / "best.pt"] if p.is_file()]
    newer = [p for p in candidates if not _same(p, resumed) and (checkpoint_step(p) or step + 1) > step]
    if not newer:
        return None
    aside = ckpt_dir / f"abandoned-{time.strftime('%Y%m%d-%H%M%S')}-after-step-{step}"
    aside.mkdir(parents=True, exist_ok=True)
    for p in newer:
        os.replace(p, aside / p.name)
    log.warning(f"resuming from step {step}: the later checkpoints of the abandoned branch "
                f"({', '.join(p.name for p in newer)}) were moved to {aside}")
    return aside


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_creatable(directory: str, key: str) -> None:
    """Before Hydra starts: a run or sweep dir typed on the command line must be creatable (one line if not);
    it is created and removed again, so the check leaves nothing behind."""
    if "${" in directory:
        return
    path = Path(directory).expanduser().absolute()
    missing = [d for d in (path, *path.parents) if not d.exists()]  # deepest first
    try:
        path.mkdir(parents=True, exist_ok=True)
        for d in missing:  # made only to try: Hydra makes it when the run starts, so a refused start leaves none
            d.rmdir()
    except OSError as e:
        reason = "a file is in the way" if isinstance(e, (FileExistsError, NotADirectoryError)) else e.strerror or e
        raise UserError(f"{key}={directory} cannot be created: {reason}; choose another {key}") from None
