"""benchmarks/gpu_check.sh --dry-run: the GPU check's every step, on the CPU at a tiny size, so it cannot rot
before a GPU appears."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils timeout")
def test_dry_run_passes_every_part_and_prints_one_table(tmp_path):
    out = tmp_path / "check"
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run", "--quality",
                           "--out", str(out)], capture_output=True, text=True, env=env, timeout=1800)
    table = (out / "table.txt").read_text()
    rows = {ln.split("\t")[0]: ln.split("\t")[1] for ln in (out / "table.tsv").read_text().splitlines()}
    assert list(rows) == ["install", "env", "pytest", "throughput", "resume", "sweep", "quality", "total"], table
    assert set(rows.values()) == {"PASS"}, table + done.stdout[-3000:]
    assert table in done.stdout and table.rstrip().endswith("ALL PASS")
    assert "default MLP graph=auto" in (out / "throughput.txt").read_text()
