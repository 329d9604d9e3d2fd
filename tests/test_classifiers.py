"""The shipped sample-quality classifiers: checksums, no training on MNIST, a tampered file refused."""
from clitools import cli
import hashlib

import pytest



def test_shipped_classifier_weights_match_their_checksums():
    from vae_cli.evaluation.quality import ASSETS, SHIPPED

    for name, digest in SHIPPED.items():
        path = ASSETS / f"{name}.pt"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
        assert path.stat().st_size < 400_000


@pytest.mark.slow
def test_first_eval_on_mnist_trains_no_classifier(tmp_path, data_dir):
    assert cli("vae-train", "max_steps=2", "trainer.eval_every=2", "device=cpu", "dataset.val_size=500",
               "trainer.eval_batch_size=500", "trainer.num_images=4", "hydra.run.dir=run", cwd=tmp_path).returncode == 0
    proc = cli("vae-eval", "ckpt=run/checkpoints/best.pt", "k=2", "k_chunk=2", "num_examples=200",
               "quality_samples=500", "progress=false", "device=cpu", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "training the sample-quality classifier" not in proc.stdout + proc.stderr
    assert not list((data_dir / "vae-cli-classifiers").glob("MNIST-*"))  # nothing trained, nothing cached
    assert "classifier_fd" in (tmp_path / "run" / "eval-best" / "metrics.json").read_text()


def test_a_tampered_classifier_is_refused(monkeypatch):
    from vae_cli.data import fake_images
    from vae_cli.errors import UserError
    from vae_cli.evaluation import quality

    data = fake_images(image_shape=(1, 28, 28))
    monkeypatch.setattr(data, "name", "MNIST")
    assert quality.shipped_classifier(data) is not None
    monkeypatch.setitem(quality.SHIPPED, "MNIST", "0" * 64)
    with pytest.raises(UserError, match="sha256"):
        quality.shipped_classifier(data)
