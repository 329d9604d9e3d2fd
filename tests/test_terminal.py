"""What a user sees: vae-train under a real pseudo-terminal (stdout and stderr both on it, 100 columns), the
done line after a resume, and ex/s that counts training steps only."""
import fcntl
import os
import pty
import re
import statistics
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from clitools import TINY, env, load, run, scalars

BIN = Path(sys.executable).parent
COLUMNS = 100


def on_terminal(args: list[str], cwd: Path, interrupt_after_s: float | None = None) -> tuple[int, list[str]]:
    """Run vae-train with a pty as its controlling terminal -> (exit code, the lines left on the screen).
    interrupt_after_s: type Ctrl-C that long after the bar first shows."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, COLUMNS, 0, 0))
    proc = subprocess.Popen([str(BIN / "vae-train"), *args], cwd=cwd, stdin=slave, stdout=slave, stderr=slave,
                            env=env(), preexec_fn=lambda: (os.setsid(), fcntl.ioctl(0, termios.TIOCSCTTY, 0)))
    os.close(slave)
    chunks, bar_seen = [], None
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        chunks.append(chunk)
        bar_seen = bar_seen or (time.monotonic() if b"%|" in chunk else None)
        if interrupt_after_s is not None and bar_seen and time.monotonic() - bar_seen > interrupt_after_s:
            os.write(master, b"\x03")  # the terminal driver sends SIGINT (and echoes ^C)
            interrupt_after_s = None
    os.close(master)
    return proc.wait(timeout=60), screen(b"".join(chunks).decode(errors="replace"))


def screen(raw: str) -> list[str]:
    """The lines as a terminal leaves them: \\r returns to column 0, ESC[K erases to the end of the line."""
    lines = []
    for raw_line in raw.replace("\r\n", "\n").split("\n"):
        buf, col = [], 0
        for part in re.split(r"(\r|\x1b\[K|\x1b\[[0-9;]*[A-Za-z])", raw_line):
            if part == "\r":
                col = 0
            elif part == "\x1b[K":
                del buf[col:]
            elif not part.startswith("\x1b"):
                buf[col:col + len(part)] = part
                col += len(part)
        lines.append("".join(buf).rstrip())
    return [ln for ln in lines if ln]


def fits(line: str) -> bool:
    """At most COLUMNS, unless the line is one path (or the command around one) too long to break: it stays
    whole, to be copied."""
    return len(line) <= COLUMNS or re.fullmatch(r" *(continue with: vae-train )?\S*/\S+;?", line) is not None


def test_under_a_terminal_the_bar_alone_moves_and_every_line_fits(tmp_path):
    code, lines = on_terminal([*TINY, "max_steps=64", "trainer.eval_every=32", "trainer.log_every=4"], tmp_path)
    assert code == 0, lines
    assert [ln for ln in lines if not fits(ln)] == []
    assert not [ln for ln in lines if re.search(r"step +\d+/64  ", ln)]  # the periodic lines: train.log only
    (log,) = tmp_path.glob("outputs/*/*/train.log")
    assert len(re.findall(r"step +\d+/64  ", log.read_text())) == 16
    start = " ".join(lines[:6])
    assert start.count("parameters") == 1 and start.count("64 steps") == 1  # said once
    assert any("epoch 2/2 100%|" in ln for ln in lines)  # a finished bar stays
    assert " ".join(lines[-2:]).split("best checkpoint:")[1].strip().endswith("/checkpoints/best.pt")


@pytest.mark.slow
def test_ctrl_c_clears_the_bar_and_ends_with_the_command_that_continues(tmp_path):
    code, lines = on_terminal([*TINY, "max_steps=100000", "trainer.eval_every=100000"], tmp_path,
                              interrupt_after_s=3)
    assert code == 130, lines
    assert not [ln for ln in lines if "%|" in ln]  # no bar left behind
    assert any(ln.strip().startswith("continue with: vae-train resume=") for ln in lines[-3:])  # one piece
    assert [ln for ln in lines if not fits(ln)] == []


@pytest.mark.slow
def test_the_done_line_after_a_resume_gives_the_whole_runs_time_and_the_segments(tmp_path):
    args = [*TINY, "trainer.eval_every=100", f"hydra.run.dir={tmp_path / 'R'}"]
    first = run(*args, "max_steps=200")
    assert first.returncode == 0, first.stderr
    earlier = load(tmp_path / "R" / "checkpoints" / "last.pt")["elapsed_s"]
    again = run(f"resume={tmp_path / 'R'}", "max_steps=300")
    assert again.returncode == 0, again.stderr
    (done,) = re.findall(r"done: 300 steps in (\d+):(\d\d) \(this segment (\d+):(\d\d), from step 200\)",
                         again.stdout + again.stderr)
    whole, segment = int(done[0]) * 60 + int(done[1]), int(done[2]) * 60 + int(done[3])
    assert abs(whole - (earlier + segment)) <= 1.5  # clock() rounds each to whole seconds
    assert load(tmp_path / "R" / "checkpoints" / "last.pt")["elapsed_s"] > earlier > 0


def test_examples_per_second_count_training_steps_only(tmp_path):
    """Validations at steps 60, 180 and 300 fall inside the log windows ending at 80, 200 and 320; their rate
    must match the other windows' (counting a whole window's examples over part of its time doubled it)."""
    done = run(*TINY, "max_steps=400", "trainer.log_every=40", "trainer.eval_every=60",
               "trainer.eval_batch_size=16", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr
    rate = dict(scalars(tmp_path)["train/examples_per_sec"])
    inside = statistics.median(rate[s] for s in (80, 200, 320))
    clean = statistics.median(rate[s] for s in (120, 160, 240, 280, 360, 400))
    assert 0.7 < inside / clean < 1.4, rate
