"""Tests for lrbench.train.data: fast, CPU only, never touch the network."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATA, idx_bytes, require_mnist
from PIL import Image

from lrbench.errors import DataNotFoundError, UserError
from lrbench.train import data

N_TRAIN, N_TEST = 20, 10


def make_set(seed: int = 0) -> dict[str, np.ndarray]:
    """A tiny data set; every train image is distinct (its first pixel is its index)."""
    rng = np.random.default_rng(seed)
    train = rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8)
    train[:, 0, 0] = np.arange(N_TRAIN)
    return {
        "train-images-idx3-ubyte": train,
        "train-labels-idx1-ubyte": np.arange(N_TRAIN) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, N_TEST),
    }


def write_set(folder: Path, arrays: dict[str, np.ndarray], gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        payload = idx_bytes(arr)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(payload))
        else:
            (folder / name).write_bytes(payload)
    return folder


def assert_matches(arrays: data.DatasetArrays, expected: dict[str, np.ndarray]) -> None:
    # numpy, as read (a sweep's parent never imports torch for them), in the IDX types
    assert all(isinstance(a, np.ndarray) for a in (arrays.train_images, arrays.train_labels,
                                                   arrays.test_images, arrays.test_labels))
    assert arrays.train_images.dtype == np.uint8
    assert arrays.train_labels.dtype == np.int64
    assert arrays.test_images.dtype == np.uint8
    assert arrays.test_labels.dtype == np.int64
    pairs = [
        (arrays.train_images, "train-images-idx3-ubyte"),
        (arrays.train_labels, "train-labels-idx1-ubyte"),
        (arrays.test_images, "t10k-images-idx3-ubyte"),
        (arrays.test_labels, "t10k-labels-idx1-ubyte"),
    ]
    for array, name in pairs:
        np.testing.assert_array_equal(array, expected[name])


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test sees the user's env, cache or Debian folders, or a memoised result."""
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(data, "KNOWN_GZ_DIRS", {})
    yield


@pytest.fixture
def mnist_root(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    expected = make_set()
    write_set(tmp_path / "root" / "MNIST" / "raw", expected)
    return tmp_path / "root", expected


@pytest.fixture
def arrays(mnist_root) -> data.DatasetArrays:
    return data.load_arrays("mnist", mnist_root[0])


# --- finding and reading ----------------------------------------------------------


def test_reads_idx_folder_exactly(mnist_root):
    root, expected = mnist_root
    arrays = data.load_arrays("mnist", root)
    assert_matches(arrays, expected)
    assert arrays.root == root
    assert arrays.name == "mnist"
    assert arrays.num_classes == 10


def test_env_data_dir_is_honoured(mnist_root, monkeypatch):
    root, expected = mnist_root
    monkeypatch.setenv(data.DATA_DIR_ENV, str(root))
    assert_matches(data.load_arrays("mnist"), expected)


def test_explicit_dir_without_files_is_an_error(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        data.load_arrays("mnist", tmp_path / "empty")
    message = str(err.value)
    assert str(tmp_path / "empty") in message
    assert "MNIST/raw" in message
    assert "train-images-idx3-ubyte" in message
    assert not (tmp_path / "cache").exists()  # no fall-through to a download


def test_explicit_dir_hints_at_gz_and_misplaced_files(tmp_path):
    write_set(tmp_path / "gz" / "MNIST" / "raw", make_set(), gz=True)
    with pytest.raises(DataNotFoundError, match="gunzip"):
        data.load_arrays("mnist", tmp_path / "gz")
    write_set(tmp_path / "flat", make_set())
    with pytest.raises(DataNotFoundError, match="move them to"):
        data.load_arrays("mnist", tmp_path / "flat")


def test_corrupt_file_is_a_user_error(mnist_root):
    root, _ = mnist_root
    (root / "MNIST" / "raw" / "t10k-images-idx3-ubyte").write_bytes(b"\xff" * 40)
    with pytest.raises(UserError, match="not valid IDX"):
        data.load_arrays("mnist", root)


@pytest.mark.parametrize("damage, names", [
    (lambda a: a.update({"train-labels-idx1-ubyte": a["train-labels-idx1-ubyte"][:-3]}),
     ["train-labels-idx1-ubyte", "labels, but", "train-images-idx3-ubyte"]),
    (lambda a: a.update({"t10k-images-idx3-ubyte": a["t10k-images-idx3-ubyte"][:-1]}),
     ["t10k-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "pair up"]),
    (lambda a: a["train-labels-idx1-ubyte"].__setitem__(7, 200),
     ["train-labels-idx1-ubyte", "label 200 at index 7", "outside 0-9"]),
])
def test_files_that_cannot_be_trained_on_are_refused_by_name(tmp_path, damage, names):
    """torchvision reads each file alone: a count mismatch once trained chance-level trials
    and stored them as COMPLETE; a label of 200 raised in every worker."""
    arrays = make_set()
    damage(arrays)
    raw = write_set(tmp_path / "root" / "MNIST" / "raw", arrays)
    with pytest.raises(UserError) as err:
        data.load_arrays("mnist", tmp_path / "root")
    assert str(raw) in str(err.value)
    for name in names:
        assert name in str(err.value)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(UserError, match=r"kmnist.*mnist"):
        data.load_arrays("cifar10")


def test_debian_gz_folder_is_materialised_into_cache(tmp_path, monkeypatch):
    expected = make_set(seed=1)
    debian = write_set(tmp_path / "debian" / "fashion-mnist", expected, gz=True)
    monkeypatch.setattr(data, "KNOWN_GZ_DIRS", {"fashion-mnist": [tmp_path / "nowhere", debian]})
    arrays = data.load_arrays("fashion-mnist", download=False)
    assert_matches(arrays, expected)
    cache = tmp_path / "cache"
    assert arrays.root == cache
    raw = cache / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(data.IDX_FILES)  # no temp files left
    # The second load reads the cache, even with the Debian folder gone.
    monkeypatch.setattr(data, "KNOWN_GZ_DIRS", {})
    assert_matches(data.load_arrays("fashion-mnist", download=False), expected)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv(data.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir() == tmp_path / "xdg" / "lrbench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.cache_dir() == tmp_path / "home" / ".cache" / "lrbench"


def offline_download(self):
    """What torchvision's MNIST.download does here with no network: it creates raw/,
    (may) leave a partial .gz, and raises RuntimeError wrapping the URLErrors."""
    raw = Path(self.raw_folder)
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"partial")
    raise RuntimeError(
        "Error downloading train-images-idx3-ubyte.gz:\n"
        "Tried https://ossci-datasets.s3.amazonaws.com/mnist/, got:\n"
        "<urlopen error [Errno -2] Name or service not known>\n"
    )


def test_offline_download_gives_guidance_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(data.dataset_class("mnist"), "download", offline_download)
    with pytest.raises(DataNotFoundError) as err:
        data.load_arrays("mnist")
    message = str(err.value)
    assert "'mnist'" in message
    assert "download failed" in message
    assert str(tmp_path / "cache" / "MNIST" / "raw") in message  # where it looked
    assert "--data-dir" in message
    assert data.DATA_DIR_ENV in message
    cache = tmp_path / "cache"
    assert list(cache.iterdir()) == []  # no partial folder to mistake for data later
    # The next lookup fails the same clean way, and still cleanly without download.
    with pytest.raises(DataNotFoundError, match="download failed"):
        data.load_arrays("mnist")
    with pytest.raises(DataNotFoundError, match="downloading is off"):
        data.load_arrays("mnist", download=False)


def test_fashion_mnist_message_mentions_apt(monkeypatch):
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.load_arrays("fashion-mnist", download=False)


def test_successful_download_is_moved_into_cache(tmp_path, monkeypatch):
    expected = make_set(seed=2)

    def fake_download(self):
        write_set(Path(self.raw_folder), expected)

    monkeypatch.setattr(data.dataset_class("kmnist"), "download", fake_download)
    arrays = data.load_arrays("kmnist")
    assert_matches(arrays, expected)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["KMNIST"]  # staging removed


# --- splitting -------------------------------------------------------------------


def first_pixels(x: torch.Tensor) -> list[int]:
    return x[:, 0].tolist()  # the image's index in the training file, by construction


def test_split_sizes_disjoint_and_complete(arrays):
    d = data.split_to_device(arrays, 5, seed=0, device="cpu")
    assert d.train_x.shape == (15, 784)
    assert d.val_x.shape == (5, 784)
    assert d.train_x.dtype == torch.uint8
    assert d.train_y.dtype == torch.int64
    assert d.test_x.shape == (N_TEST, 784)
    assert d.test_y.shape == (N_TEST,)
    assert not d.validation_is_test
    assert d.num_classes == 10
    assert d.device == torch.device("cpu")
    train_ids, val_ids = first_pixels(d.train_x), first_pixels(d.val_x)
    assert not set(train_ids) & set(val_ids)
    assert sorted(train_ids + val_ids) == list(range(N_TRAIN))
    # Labels travel with their images (label = index % 10 by construction).
    assert d.train_y.tolist() == [i % 10 for i in train_ids]
    assert d.val_y.tolist() == [i % 10 for i in val_ids]
    assert torch.equal(d.train_x[0], torch.as_tensor(arrays.train_images[train_ids[0]]).flatten())


def test_split_is_deterministic_per_seed(arrays):
    a = data.split_to_device(arrays, 5, seed=0, device="cpu")
    b = data.split_to_device(arrays, 5, seed=0, device="cpu")
    c = data.split_to_device(arrays, 5, seed=1, device="cpu")
    assert torch.equal(a.val_x, b.val_x)
    assert torch.equal(a.train_x, b.train_x)
    assert first_pixels(a.val_x) != first_pixels(c.val_x)


def test_fraction_equals_count(arrays):
    frac = data.split_to_device(arrays, 0.25, seed=3, device="cpu")
    count = data.split_to_device(arrays, 5, seed=3, device="cpu")
    assert torch.equal(frac.val_x, count.val_x)
    assert torch.equal(frac.train_x, count.train_x)


def test_zero_validation_uses_test_set(arrays):
    for zero in (0, 0.0):
        d = data.split_to_device(arrays, zero, seed=0, device="cpu")
        assert d.validation_is_test
        assert d.val_x is d.test_x
        assert d.val_y is d.test_y
        assert d.train_x.shape == (N_TRAIN, 784)


@pytest.mark.parametrize("bad", [N_TRAIN, N_TRAIN + 1, -1, 1.0, 1.5, -0.1, True, "5", None])
def test_bad_validation_size(arrays, bad):
    with pytest.raises(UserError, match="validation_size"):
        data.split_to_device(arrays, bad, seed=0, device="cpu")


def test_too_large_size_names_training_set_size(arrays):
    with pytest.raises(UserError, match=rf"validation_size {N_TRAIN}.*{N_TRAIN} training"):
        data.split_to_device(arrays, N_TRAIN, seed=0, device="cpu")


def test_to_float_matches_totensor_bit_exact():
    from torchvision.transforms import ToTensor  # (1.5 s: here, not in every collection)

    pixels = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    pixels[0, :3] = [0, 1, 255]
    expected = ToTensor()(Image.fromarray(pixels, mode="L"))  # [1, 28, 28] float32
    got = data.model_input(torch.from_numpy(pixels).reshape(1, 784))
    assert got.dtype == expected.dtype == torch.float32
    assert torch.equal(got, expected.reshape(1, 784))


def test_shared_mnist_loads():
    require_mnist()
    arrays = data.load_arrays("mnist", DATA)
    assert arrays.train_images.shape == (5000, 28, 28)
    assert arrays.test_images.shape == (10000, 28, 28)
    assert arrays.num_classes == 10
    assert np.unique(arrays.test_labels).tolist() == list(range(10))
