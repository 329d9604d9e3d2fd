"""Checkpoints: one dict of tensors and plain types, written atomically, loaded with weights_only=True."""
import contextlib
import io
import os
import pickle
import random
from pathlib import Path

import numpy as np
import torch

from vae_cli import __version__
from vae_cli.errors import UserError


def rng_state() -> dict:
    """Every RNG a run touches, as tensors and plain types (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": random.getstate(),
    }


def seed_everything(seed: int) -> None:
    """Seed torch (all devices), numpy and python's random, so that every RNG a checkpoint restores is seeded."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    cuda = list(state.get("cuda") or [])[:torch.cuda.device_count() if torch.cuda.is_available() else 0]
    for i, s in enumerate(cuda):  # a device change (CPU <-> CUDA, fewer GPUs) restores what exists on both
        torch.cuda.set_rng_state(s.cpu(), i)
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(_as_tuples(state["python"]))


def _as_tuples(x):
    return tuple(_as_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(path: Path, state: dict, copies: tuple[Path, ...] = ()) -> None:
    """Serialize once, then write `path` (and each of `copies`) atomically: a temporary file, flushed and
    fsynced, renamed over the target. A failed write (disk full, read-only) removes the temporary file,
    leaves the previous checkpoint as it was, and raises one UserError."""
    buf = io.BytesIO()
    torch.save({**state, "version": __version__}, buf)
    for target in (Path(path), *map(Path, copies)):
        _write_atomic(target, buf.getbuffer())


def _write_atomic(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        kept = f"the previous {path.name} is intact" if path.is_file() else f"no earlier {path.name} existed"
        raise UserError(f"could not write checkpoint {path}: {e.strerror or e}; {kept}") from None


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load a checkpoint without running code from it; bad or missing files give one clear UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    if not _torch_file(path):  # a text file or another tool's: not "untrusted Python objects"
        raise UserError(f"checkpoint {path} is corrupt or not a vae-cli checkpoint (not a file torch.save writes)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:  # weights_only refused a Python object: never suggest loading it unsafely
        raise UserError(f"checkpoint {path} is not a vae-cli checkpoint or is not trusted: it holds Python objects "
                        f"that the safe loader refuses to run") from None
    except Exception as e:  # truncated, corrupt or not a torch file at all
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UserError(f"checkpoint {path} is corrupt or not a vae-cli checkpoint ({type(e).__name__}: {first})") \
            from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise UserError(f"checkpoint {path} is not a vae-cli checkpoint (no model/config entries)")
    return state


def _torch_file(path: Path) -> bool:
    """torch.save's zip archive, or its legacy format (a pickle: first byte 0x80)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head == b"PK\x03\x04" or head[:1] == b"\x80"


def check_version(state: dict, path: Path) -> None:
    """Checkpoints load across patch releases; another major (or, before 1.0, minor) version is refused."""
    version = state.get("version")
    if not isinstance(version, str) or _release(version) != _release(__version__):
        raise UserError(f"checkpoint {path} was written by vae-cli {version or 'of an unknown version'}, incompatible "
                        f"with this vae-cli {__version__} (CHANGELOG.md says what changed): evaluate or sample it with "
                        f"{release_name(version)}, or train it again with this one")


def release_name(version) -> str:
    """'vae-cli 0.1.x': the releases that read a checkpoint of this version."""
    known = isinstance(version, str) and version[:1].isdigit()
    return f"vae-cli {'.'.join(_release(version))}.x" if known else "the vae-cli that wrote it"


def _release(version: str) -> tuple[str, ...]:
    parts = version.split(".")
    return tuple(parts[:2]) if parts[0] == "0" else tuple(parts[:1])
