"""The decoded-images cache: one uint8 file per (folder contents, transform), written atomically.

Key: sha256 over every image's relative path, size and mtime, the transform and the format version, so
a changed, added or removed file, or another image_size, makes a new cache; once it is written, the older
caches of the same folder and transform are deleted. Format: torch.save of a dict of
tensors and plain lists (torch.load(weights_only=True) reads it back with no pickle code run); it loads in
one read, with no decoding. A second start while the first is still decoding waits on a lock file, then
reads the first one's cache."""
import contextlib
import glob
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import torch

from vae_cli.errors import DataError

log = logging.getLogger("vae_cli")
VERSION = 1


def default_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vae-cli" / "images"


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj).encode()).hexdigest()


def cache_file(folder: Path, stats: list[tuple], transform: dict, cache_dir: str | None) -> Path:
    """<cache_dir or ~/.cache/vae-cli/images>/<folder name>-<place>-<contents>.pt: `place` hashes the folder's
    resolved path, the transform and the format version; `contents` the files' paths, sizes and mtimes."""
    place = _digest({"version": VERSION, "root": str(folder.resolve()), "transform": transform})[:10]
    contents = _digest({"files": stats})[:12]
    where = Path(cache_dir).expanduser() if cache_dir else default_dir()
    return where / f"{folder.name or 'root'}-{place}-{contents}.pt"


def remove_stale(path: Path) -> int:
    """Once `path` is written: delete the caches of the same folder and transform whose files have changed
    since (and their lock files), so editing a folder does not pile up copies. Returns how many went."""
    name, place, _ = path.stem.rsplit("-", 2)
    removed = 0
    for old in path.parent.glob(f"{glob.escape(name)}-{place}-*.pt"):
        if old != path:
            with contextlib.suppress(OSError):
                old.unlink()
                removed += 1
            with contextlib.suppress(OSError):
                old.with_name(old.name + ".lock").unlink()
    return removed


def load(path: Path) -> dict | None:
    """The cached dict, or None when it is absent or unreadable (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception as e:  # a file cut short by a crash elsewhere, or another vae-cli's format
        log.warning(f"ignoring the unreadable image cache {path} ({type(e).__name__}); rebuilding it")
        return None


def save(path: Path, entry: dict) -> bool:
    """Write `entry` to a temporary file beside `path`, then rename it into place (atomic on one disk).
    Returns False (with a warning) when the cache dir cannot be written: the run goes on uncached."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            torch.save(entry, f)
        os.replace(tmp, path)
        return True
    except OSError as e:
        log.warning(f"could not write the image cache {path} ({e.strerror or e}); the next start decodes again "
                    f"(set dataset.cache_dir to a writable directory)")
        with contextlib.suppress(Exception):
            os.unlink(tmp)
        return False


@contextlib.contextmanager
def building(path: Path):
    """Held while one process decodes into `path`: a second start waits here, then finds the cache."""
    try:
        import fcntl
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.with_name(path.name + ".lock"), "a+")
    except (ImportError, OSError):  # no POSIX locks, or an unwritable cache dir: decode without one
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info(f"another vae-cli is decoding these images into {path}; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def available_memory() -> int:
    """Bytes of host memory available now (MemAvailable on Linux, else free pages)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(num: int, shape: tuple[int, int, int], knob: str, available: int | None = None) -> None:
    """N x C x H x W uint8 bytes (held twice while splitting) must fit the available memory."""
    need = 2 * num * shape[0] * shape[1] * shape[2]
    available = available_memory() if available is None else available
    if need > available:
        raise DataError(f"{num} images of {shape[0]}x{shape[1]}x{shape[2]} need {need / 2**30:.1f} GiB in "
                        f"memory but {available / 2**30:.1f} GiB are available: lower {knob} (e.g. "
                        f"{knob}={max(shape[1] // 2, 8)}) or use fewer images")


def check_device_fits(num_bytes: int, device: torch.device, free: int | None = None) -> None:
    """The uint8 images go to the training device whole: on CUDA they may take at most half its free memory
    (the model, activations and optimizer need the rest)."""
    if device.type != "cuda" and free is None:
        return
    free = torch.cuda.mem_get_info(device)[0] if free is None else free
    if num_bytes > free // 2:
        raise DataError(f"the images take {num_bytes / 2**30:.1f} GiB and {device} has {free / 2**30:.1f} GiB free: "
                        f"lower dataset.image_size (or use fewer images, or device=cpu)")
