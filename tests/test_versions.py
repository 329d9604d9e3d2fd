"""A torchvision built for another torch (it fails at import) is one line naming both versions and the fix."""
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

# A sitecustomize that makes `import torchvision` fail as a CPU torch beside a CUDA torchvision does.
BROKEN = '''import sys
class Broken:
    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            raise RuntimeError("operator torchvision::nms does not exist")
sys.meta_path.insert(0, Broken())
'''


@pytest.mark.parametrize("tool", ["vae-train", "vae-eval", "vae-sample", "vae-prior"])
def test_a_torch_torchvision_mismatch_is_one_line_with_both_versions_and_the_fix(tool, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BROKEN)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([str(Path(sys.executable).with_name(tool)), "ckpt=x.pt"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"{tool}: error: torchvision {metadata.version('torchvision')} does not work with "
                               f"torch {metadata.version('torch')} (importing torchvision failed: operator "
                               f"torchvision::nms does not exist); install both from one index")
