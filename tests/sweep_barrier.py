"""A Hydra callback for tests/test_sweeps.py: each job announces itself and waits (up to 60 s) until
`count` jobs have started, then records how many it saw. Jobs that run one after another see only one."""
import os
import time
from pathlib import Path

from hydra.experimental.callback import Callback


class Barrier(Callback):
    def __init__(self, dir: str, count: int):
        self.dir, self.count = Path(dir), count

    def on_job_start(self, config, **kwargs) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / f"started_{os.getpid()}").touch()
        deadline = time.time() + 60
        while len(list(self.dir.glob("started_*"))) < self.count and time.time() < deadline:
            time.sleep(0.05)
        (self.dir / f"saw_job{config.hydra.job.num}").write_text(str(len(list(self.dir.glob("started_*")))))
