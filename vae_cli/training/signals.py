"""SIGTERM / SIGINT: finish the current step, write a checkpoint, and exit with 128 + the signal number.

The handler only sets a flag; the trainer reads it once per step (a Python attribute, no device sync).
A second signal of the same kind stops at once (KeyboardInterrupt), without a checkpoint.
Handlers are installed by the CLI entry alone, and restored when it returns; after a stop they are left ignoring
further signals, since the process is on its way out.
"""
import contextlib
import signal

HANDLED = (signal.SIGTERM, signal.SIGINT)


class StopRequested(Exception):
    """Raised by the trainer after it saved a checkpoint because a signal asked it to stop."""

    def __init__(self, signum: int, step: int, checkpoint):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint {checkpoint}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # 143 for SIGTERM, 130 for SIGINT: the shell's convention


class Interrupted(KeyboardInterrupt):
    """A second signal of the same kind: stop at once, without a checkpoint (the ones written are intact)."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"second {signal.Signals(signum).name}: stopped without a checkpoint")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopFlag:
    def __init__(self):
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        if self.signum == signum:
            raise Interrupted(signum)
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals():
    """Install the flag-setting handlers for SIGTERM and SIGINT; yield the flag; restore the old handlers (after a
    stop signal: ignore them, since the process is on its way out)."""
    flag = StopFlag()
    previous = {s: signal.signal(s, flag._handle) for s in HANDLED}
    try:
        yield flag
    finally:
        for s, handler in previous.items():  # stopping: ignore further signals, so none lands in the exit
            signal.signal(s, signal.SIG_IGN if flag else handler)
