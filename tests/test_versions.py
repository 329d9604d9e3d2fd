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


# vae-train reads the MNIST family without torchvision; CIFAR-10 needs it. The apps draw with it.
@pytest.mark.parametrize("tool, args", [("vae-train", ["dataset=cifar10", "max_steps=1", "device=cpu"]),
                                        ("vae-eval", ["ckpt=x.pt"]), ("vae-sample", ["ckpt=x.pt"]),
                                        ("vae-prior", ["ckpt=x.pt"])])
def test_a_torch_torchvision_mismatch_is_one_line_with_both_versions_and_the_fix(tool, args, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BROKEN)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "VAE_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([str(Path(sys.executable).with_name(tool)), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"{tool}: error: torchvision {metadata.version('torchvision')} does not work with "
                               f"torch {metadata.version('torch')} (importing torchvision failed: operator "
                               f"torchvision::nms does not exist); install both from one index")
