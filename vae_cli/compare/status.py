"""A run's status from what it left: its lock, error.txt, train.log and checkpoints. Reads only."""
import contextlib
import errno
import fcntl
from pathlib import Path

LOCK_NAME = ".lock"  # as vae_cli.training.rundir writes it (not imported: that module pulls in torch)
START_MARK, DONE_MARK = "] - run dir ", "] - done: "  # the trainer's start line and its last line


def run_status(run_dir: Path) -> tuple[str, str]:
    """(status, detail): running (holder), failed (the error's line), finished, or stopped (the resume command)."""
    holder = lock_holder(run_dir / LOCK_NAME)
    if holder is not None:
        return "running", holder
    error = run_dir / "error.txt"
    if error.is_file():
        return "failed", error_line(error)
    if finished(run_dir / "train.log"):
        return "finished", ""
    if any((run_dir / "checkpoints").glob("*.pt")):
        return "stopped", f"vae-train resume={run_dir}"
    return "failed", "ended before its first checkpoint (no error recorded)"


def lock_holder(path: Path) -> str | None:
    """The holder's line ("PID 12 on host") when a live process holds the run dir's flock, else None.
    Probed with a shared, non-blocking flock on a read-only handle, released at once."""
    try:
        f = open(path)
    except OSError:
        return None
    with f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return f.read().strip() or "another process"
            return None
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return None


def error_line(path: Path) -> str:
    """The first line of a user error; the last line (the exception) of a traceback."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        if lines:
            return lines[-1] if lines[0].startswith("Traceback") else lines[0]
    return "failed (error.txt is empty or unreadable)"


def finished(log: Path) -> bool:
    """The last start recorded in train.log reached its `done:` line."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return False
    return text.rfind(DONE_MARK) > text.rfind(START_MARK) >= 0 or (DONE_MARK in text and START_MARK not in text)
