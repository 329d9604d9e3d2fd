"""Running the real CLI in subprocesses (tiny, seeded, single-threaded, CPU): plain, on a pseudo-terminal, and the fault tests."""
import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import torch

# A run that takes ~1 ms per step: 8x8 fake images, one 32-unit layer each way, 4 latent dims.
TINY = ["trainer=debug", "dataset.image_shape=[1,8,8]", "model.encoder.hidden_sizes=[32]",
        "model.decoder.hidden_sizes=[32]", "latent_dim=4", "trainer.batch_size=16", "trainer.num_images=4",
        "device=cpu"]


def env() -> dict:
    # one thread: bitwise-reproducible CPU kernels from run to run, and no oversubscription of shared cores
    # PYTHONPATH: test-only targets (faults.NonFiniteAt) live in tests/, not in the package
    path = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0", "PYTHONPATH": path}


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vae_cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env())


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vae_cli", *args], capture_output=True, text=True, env=env(),
                          timeout=timeout)


def wait_for(pattern: str, folder: Path, proc: subprocess.Popen, timeout: float = 90) -> Path:
    """Poll (every 5 ms) until a file matching `pattern` exists under `folder`; fail if the run ends first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = sorted(Path(folder).glob(pattern))
        if found:
            return found[0]
        assert proc.poll() is None, f"the run ended before {pattern} appeared: {proc.communicate()}"
        time.sleep(0.005)
    raise AssertionError(f"no {pattern} under {folder} after {timeout} s")


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_tensors(a, b, where: str = "") -> None:
    """Bitwise equality of two nested structures of tensors and plain values."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    elif torch.is_tensor(a):
        assert torch.equal(a, b), f"tensors differ at {where}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series TensorBoard shows for a run dir (purges applied), as (step, value) lists."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(Path(run_dir)), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("vae-train: error: "), stderr
    return lines[0]

BIN = Path(sys.executable).parent


def cli(tool: str, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / tool), *args], cwd=cwd, capture_output=True, text=True, env=env(),
                          timeout=timeout)


def run_in_pty(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """stderr on a pseudo-terminal (120 columns), stdout on a pipe: (exit code, terminal text, stdout)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen([str(BIN / "vae-train"), *args], cwd=cwd, stdin=slave, stdout=subprocess.PIPE,
                            stderr=slave, env=env())
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    out = proc.stdout.read().decode()
    os.close(master)
    return proc.wait(), b"".join(chunks).decode(errors="replace"), out


def only_run_dir(root: Path) -> Path:
    (run,) = [p.parent for p in root.rglob("train.log")]
    return run


def one_line(proc: subprocess.CompletedProcess, tool: str) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"{tool}: error: "), proc.stderr
    return lines[0]
