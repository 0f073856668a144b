"""Fixtures shared by the report tests: real sweeps are slow, so they run once."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lrbench.train.data import DeviceData, load_arrays, split_to_device

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CONFIRM_SEEDS = 3
# For test modules that read the real MNIST sample: skip, saying where it was looked for.
NEEDS_MNIST = pytest.mark.skipif(not (DATA / "MNIST" / "raw").is_dir(),
                                 reason=f"real MNIST sample not found at {DATA}/MNIST/raw")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for in-process training: with a second busy process on 2 cores,
    two threads made each trial ~100x slower (4.8 s instead of 0.05 s). Results are the
    same either way."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def mnist_subset(n_train: int, n_test: int, validation: float | int) -> DeviceData:
    """The first images of the real MNIST sample, split and on the CPU (skips without it)."""
    if not (DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"real MNIST sample not found at {DATA}/MNIST/raw")
    arrays = load_arrays("mnist", DATA)
    arrays = dataclasses.replace(
        arrays,
        train_images=arrays.train_images[:n_train], train_labels=arrays.train_labels[:n_train],
        test_images=arrays.test_images[:n_test], test_labels=arrays.test_labels[:n_test],
    )
    return split_to_device(arrays, validation, seed=0, device="cpu")


def small_mnist(root: Path, n_train: int, n_test: int, folder: str = "MNIST",
                start: int = 0) -> Path:
    """A torchvision root holding images ``start``.. of the real MNIST sample (skips
    without it): another data set of the same name, as a user's second folder would be.
    ``folder`` files them under another data set's name (FashionMNIST), to stand in for
    it where only the mechanics are tested."""
    raw_in, raw_out = DATA / "MNIST" / "raw", root / folder / "raw"
    if not (raw_in / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"real MNIST sample not found at {raw_in}")
    raw_out.mkdir(parents=True)
    for split, count in (("train", n_train), ("t10k", n_test)):
        for kind, header in (("images-idx3", 16), ("labels-idx1", 8)):
            raw = (raw_in / f"{split}-{kind}-ubyte").read_bytes()
            per_item = 28 * 28 if kind.startswith("images") else 1
            # the header's count (bytes 4-8) becomes `count`; the rest of it is kept
            head = raw[:4] + count.to_bytes(4, "big") + raw[8:header]
            first = header + start * per_item
            (raw_out / f"{split}-{kind}-ubyte").write_bytes(
                head + raw[first:first + count * per_item])
    return root


@pytest.fixture(scope="session")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder from real runs of the command line, on the MNIST sample.

    ``smoke`` (9 trials x 3 epochs) with 3 confirm seeds per family, and the tutorial's
    five runs (``dlwizard``), through worker processes and the journal storage.
    """
    if not (DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST sample not found at {DATA}/MNIST/raw")
    folder = tmp_path_factory.mktemp("results")
    for args in (("sweep", "smoke", "--trials", "9", "--epochs", "3", "--workers", "2"),
                 ("confirm", "smoke", "--seeds", str(CONFIRM_SEEDS), "--workers", "2"),
                 ("sweep", "dlwizard", "--workers", "2")):
        done = subprocess.run([sys.executable, "-m", "lrbench", *args, "--results", str(folder),
                               "--data-dir", str(DATA)],
                              cwd=REPO, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    return folder
