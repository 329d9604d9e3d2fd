"""Data: bundled MNIST offline, splits, binarization/dequantization, index batches, missing-data errors."""
import pytest
import torch

from conftest import has_dataset
from vae_cli.data import IndexBatches, fake_images, prepare_fixed, torchvision_images
from vae_cli.errors import ConfigError, DataError
from vae_cli.models.likelihoods import BernoulliLikelihood, GaussianLikelihood


def test_bundled_mnist_loads_into_an_empty_dir_without_network(tmp_path):
    data = torchvision_images("MNIST", str(tmp_path), val_size=5000, download=False)
    assert (len(data.train), len(data.val), len(data.test)) == (55000, 5000, 10000)
    assert data.train.images.dtype == torch.uint8 and data.image_shape == (1, 28, 28)
    assert data.num_classes == 10 and int(data.train.images.max()) == 255
    assert sorted(p.name for p in (tmp_path / "MNIST" / "raw").glob("*.gz"))[0] == "t10k-images-idx3-ubyte.gz"


def test_split_is_seeded_and_disjoint(tmp_path):
    a = torchvision_images("MNIST", str(tmp_path), val_size=100, split_seed=1)
    b = torchvision_images("MNIST", str(tmp_path), val_size=100, split_seed=1)
    c = torchvision_images("MNIST", str(tmp_path), val_size=100, split_seed=2)
    assert torch.equal(a.val.images, b.val.images) and not torch.equal(a.val.images, c.val.images)
    assert len(a.train) + len(a.val) == 60000


def test_fashion_mnist_from_the_shared_copy(data_dir):
    if not has_dataset(data_dir, "FashionMNIST"):
        pytest.skip("FashionMNIST is not in ../shared/data")
    data = torchvision_images("FashionMNIST", None, val_size=5000, download=False)  # root from VAE_DATA_DIR
    assert (len(data.train), len(data.test), data.image_shape) == (55000, 10000, (1, 28, 28))


def test_missing_data_names_files_dir_and_env_var(tmp_path):
    with pytest.raises(DataError) as err:
        torchvision_images("FashionMNIST", str(tmp_path), download=False)
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and str(tmp_path) in msg and "VAE_DATA_DIR" in msg


def test_dynamic_binarization_resamples_and_matches_intensity():
    images = torch.full((2000, 1, 2, 2), 64, dtype=torch.uint8)
    a, b = BernoulliLikelihood.prepare(images), BernoulliLikelihood.prepare(images)
    assert set(a.unique().tolist()) == {0.0, 1.0} and not torch.equal(a, b)
    assert a.mean().item() == pytest.approx(64 / 255, abs=0.02)
    ends = BernoulliLikelihood.prepare(torch.tensor([0, 255], dtype=torch.uint8).repeat(5000).view(-1, 1, 1, 2))
    assert (ends[..., 0] == 0).all() and (ends[..., 1] == 1).all()  # p = 0 and p = 1 are never flipped


def test_dequantization_stays_in_each_bin():
    images = torch.arange(256, dtype=torch.uint8).view(256, 1, 1, 1).repeat(1, 1, 4, 4)
    lo = images.float() / 256
    for _ in range(200):  # float32 rounding once put ~3% of calls' top draws on the next bin's edge
        x = GaussianLikelihood.prepare(images)
        assert ((x >= lo) & (x < lo + 1 / 256)).all()


def test_prepare_fixed_is_repeatable_and_leaves_the_global_rng_alone():
    images = torch.full((100, 1, 2, 2), 128, dtype=torch.uint8)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = prepare_fixed(BernoulliLikelihood.prepare, images, seed=3)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(a, prepare_fixed(BernoulliLikelihood.prepare, images, seed=3))


def test_index_batches_cover_an_epoch_without_repeats():
    batches = IndexBatches(10, 3, torch.device("cpu"), seed=0)
    epoch = torch.cat([next(batches) for _ in range(3)])  # 3 full batches; the 10th example is dropped
    assert len(epoch.unique()) == 9
    state = batches.state_dict()
    ahead = [next(batches) for _ in range(4)]
    batches.load_state_dict(state)
    assert all(torch.equal(a, next(batches)) for a in ahead)


def test_batch_larger_than_dataset_is_a_clear_error():
    with pytest.raises(ConfigError, match="batch_size=20"):
        IndexBatches(10, 20, torch.device("cpu"), seed=0)


def test_fake_images_are_deterministic():
    a, b = fake_images(seed=3), fake_images(seed=3)
    assert torch.equal(a.train.images, b.train.images) and a.image_shape == (1, 28, 28)
    assert fake_images(image_shape=(3, 32, 32)).image_shape == (3, 32, 32)


def test_read_only_data_dir_unpacks_into_the_cache(tmp_path, monkeypatch, data_dir):
    import torchvision

    from vae_cli.data import torchvision_sets as data
    from vae_cli.errors import DataError

    ro = tmp_path / "ro"
    (ro / "MNIST" / "raw").mkdir(parents=True)
    for f in (data_dir / "MNIST" / "raw").glob("*.gz"):
        (ro / "MNIST" / "raw" / f.name).write_bytes(f.read_bytes())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_can_write", lambda folder: not str(folder).startswith(str(ro)))  # root can't chmod
    images = data.torchvision_images("MNIST", str(ro), download=False)
    assert len(images.train) == 55000 and not list((ro / "MNIST" / "raw").glob("*ubyte"))
    assert len(list((tmp_path / "cache" / "vae-cli" / "unpacked" / "MNIST" / "raw").glob("*ubyte"))) == 4
    (tmp_path / "blocked").write_text("a file where the cache dir should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "blocked"))
    with pytest.raises(DataError, match=f"the data dir {ro} is read-only .* set VAE_DATA_DIR"):
        data.unpack_dir(torchvision.datasets.MNIST, ro)
