"""The CPU thread policy of a run, chosen before torch starts its OpenMP pool (so no torch import here).

- threads per run = cores // parallel jobs: a `launcher=joblib` sweep of n_jobs on c cores gives each job
  c // n_jobs threads instead of c each (which oversubscribes the cores n_jobs times over);
- when the machine is busy at start (the tasks runnable right now besides this one > cores - 0.5):
  OMP_WAIT_POLICY=PASSIVE, so idle OpenMP threads sleep instead of spinning against the other processes'
  work, and no more threads than the cores the load leaves idle (at least one): threads that must meet at
  every barrier stall when each gets its time slice at a different moment (benchmarks/contention.py busy).
A variable the user set in the environment always wins; then `trainer.threads=N`; then the rule above.
libgomp (torch's OpenMP on Linux) reads OMP_* once, when torch is imported: `preset_environment` runs first
thing in `vae-train`, and the sweep's worker processes inherit the environment it set.
"""
import os
import time
from dataclasses import dataclass

from vae_cli.command_line import CommandLine

OURS = "VAE_CLI_THREAD_POLICY"  # set beside the OMP_* variables we chose, so a job tells them from the user's


@dataclass
class Policy:
    threads: int
    wait_policy: str | None  # "PASSIVE" or None (OpenMP's default)
    why: str


def _count(value) -> int | None:
    """A thread or job count as typed (an int, or its text), else None (a sweep, null, a typo: left to the job)."""
    text = str(value).strip()
    return int(text) if text.lstrip("-").isdigit() and not isinstance(value, bool) else None


def parallel_jobs(line: CommandLine, cores: int) -> int:
    """How many runs this command starts at once: n_jobs of a joblib sweep (-1: one per core), else 1."""
    if not line.multirun or line.value("launcher") != "joblib":
        return 1
    n = _count(line.value("hydra.launcher.n_jobs")) or 2  # configs/launcher/joblib.yaml: n_jobs 2
    return max(1, cores + 1 + n if n < 0 else n)  # joblib: -1 = all cores, -2 = all but one ...


def choose(line: CommandLine, environ: dict, cores: int, load: float) -> Policy:
    """The policy for the command `line` on `cores` cores while `load` other tasks are runnable."""
    jobs = parallel_jobs(line, cores)
    user = environ.get("OMP_NUM_THREADS") if OURS not in environ else None
    asked = _count(line.value("trainer.threads"))
    if asked is not None and asked < 1:
        asked = None  # the Trainer refuses it, once the config is composed
    if user:
        threads, why = int(user), f"OMP_NUM_THREADS={user} from the environment"
    elif asked is not None:
        threads, why = asked, f"trainer.threads={asked}"
    else:
        threads, why = max(1, cores // jobs), f"{cores} cores / {jobs} parallel job(s)"
    busy = load > cores - 0.5
    if busy and not user and asked is None:  # threads that wait on each other's time slices stall:
        free = max(1, int(cores - load + 0.5))  # keep to the cores the other work leaves idle (at least one)
        threads, why = min(threads, free), why + f", {free} idle"
    wait = environ.get("OMP_WAIT_POLICY") or ("PASSIVE" if busy else None)
    why += f"; {load:g} other runnable task(s) on {cores} cores: " + (f"OMP_WAIT_POLICY={wait}" if wait else
                                                                     "busy-waiting")
    return Policy(threads, wait, why)


def runnable_others(reads: int = 3, gap_s: float = 0.005) -> float:
    """Tasks runnable right now besides this one: the median of a few reads of /proc/loadavg's 4th field
    (Linux), `gap_s` apart, so a task that wakes for a moment does not count. Not the 1-minute load average:
    it lags by a minute, so a run started just after another (a shell loop of runs, a benchmark) would
    count the finished run as load and train on one passive thread. Elsewhere: the load average."""
    counts = []
    try:
        for i in range(reads):
            time.sleep(gap_s if i else 0)
            with open("/proc/loadavg") as f:
                counts.append(max(0, int(f.read().split()[3].split("/")[0]) - 1))
    except (OSError, IndexError, ValueError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return sorted(counts)[len(counts) // 2]


def preset_environment(line: CommandLine, environ=os.environ) -> Policy:
    """Choose the policy and export it (OMP_NUM_THREADS, OMP_WAIT_POLICY) unless the user set them."""
    policy = choose(line, dict(environ), os.cpu_count() or 1, runnable_others())
    if "OMP_NUM_THREADS" not in environ or OURS in environ:
        environ["OMP_NUM_THREADS"] = str(policy.threads)
    if policy.wait_policy and "OMP_WAIT_POLICY" not in environ:
        environ["OMP_WAIT_POLICY"] = policy.wait_policy
    environ[OURS] = policy.why
    return policy


def apply_in_job(threads: int | None = None) -> str:
    """In the process that trains (this one, or a sweep worker): torch's thread count from the policy preset
    at start (trainer.threads when the user's environment does not say); returns the line that says so (the
    CLI logs it once every check has passed, so a refused start prints only its one-line error)."""
    import torch

    why = os.environ.get(OURS, "the environment as given")
    user_env = "OMP_NUM_THREADS" in os.environ and OURS not in os.environ
    if threads is not None and not user_env and f"trainer.threads={threads}" not in why:
        why = f"trainer.threads={threads}"
        torch.set_num_threads(threads)
    elif os.environ.get("OMP_NUM_THREADS", "").isdigit():
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    return f"threads: {torch.get_num_threads()} ({why})"
