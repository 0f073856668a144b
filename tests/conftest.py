"""What the tests share: the real data, the ``lrbench`` command run as a user runs it, and
fixtures whose real sweeps are slow, so they run once."""

from __future__ import annotations

import compileall
import dataclasses
import fcntl
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

# Two tests run at once on 2 cores (pytest -n 2), each with processes of up to 2 torch
# threads. OpenMP's threads then spin while they wait, on cores the other test needs:
# waiting passively, two concurrent smoke sweeps took 10.5-11.3 CPU-s against 14.1-18.2,
# and less wall time too. (A sweep alone on its machine runs faster with the spinning:
# lrbench leaves it as it is.) Set before torch loads OpenMP; the tests' processes inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pytest
import torch

from lrbench.train.data import DeviceData, load_arrays, split_to_device

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CONFIRM_SEEDS = 3
HAS_MNIST = (DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()
MNIST_MISSING = f"real MNIST sample not found at {DATA}/MNIST/raw"
# For test modules that read the real MNIST sample: skip, saying where it was looked for.
NEEDS_MNIST = pytest.mark.skipif(not HAS_MNIST, reason=MNIST_MISSING)


def require_mnist() -> None:
    """Inside a test or fixture: skip it without the real MNIST sample."""
    if not HAS_MNIST:
        pytest.skip(MNIST_MISSING)


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8 images [N, 28, 28], or labels [N]) in the IDX format torchvision's
    raw files use: a magic number (0x0803 images, 0x0801 labels), the dims, big-endian."""
    magic = 0x800 + array.ndim
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def write_idx(folder: Path, images: np.ndarray, labels: np.ndarray, test: bool,
              dataset: str = "MNIST") -> None:
    """One split's two raw files under ``folder/DATASET/raw``, in torchvision's names."""
    prefix = "t10k" if test else "train"
    raw = folder / dataset / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(images))
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))


def run_python(script: str, *args: str, timeout: float = 300,
               env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -c SCRIPT ARGS`` in a fresh process from the repository, output captured
    (``env`` adds to the environment)."""
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env={**os.environ, **(env or {})})


def lrbench_command(*args: str, results: Path | None = None,
                    data_dir: Path | None = None) -> list[str]:
    """``python -m lrbench ARGS``, with ``--results`` and ``--data-dir`` when given."""
    command = [sys.executable, "-m", "lrbench", *args]
    if results is not None:
        command += ["--results", str(results)]
    if data_dir is not None:
        command += ["--data-dir", str(data_dir)]
    return command


def start_lrbench(*args: str, results: Path | None = None, data_dir: Path | None = None,
                  env: Mapping[str, str] | None = None, **popen: object) -> subprocess.Popen:
    """The ``lrbench`` command as a user starts it, from the repository, its output piped
    unless ``popen`` says where (``env`` adds to the environment)."""
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    return subprocess.Popen(lrbench_command(*args, results=results, data_dir=data_dir),
                            cwd=REPO, text=True, env={**os.environ, **(env or {})}, **popen)


def wait_for_text(path: Path, text: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until the file ``path`` (a process's redirected output) holds ``text``."""
    deadline = time.monotonic() + timeout
    while text not in (path.read_text() if path.exists() else ""):
        assert proc.poll() is None, f"the process ended before saying {text!r}"
        assert time.monotonic() < deadline, f"{path} never said {text!r}"
        time.sleep(0.05)


def restart_under_a_sweep(server: Any, sweep: Callable[[IO[str]], subprocess.Popen],
                          ready: Callable[[subprocess.Popen], object],
                          log: Path) -> tuple[subprocess.Popen, str, str]:
    """Start ``sweep`` (its stderr to the file ``log``); once ``ready`` returns, stop the
    storage ``server`` (a private one: ``stop()``, ``start()``), and start it again as
    soon as the sweep says it is unreachable. The sweep, its stdout and its stderr."""
    with log.open("w") as stderr:
        proc = sweep(stderr)
        ready(proc)
        server.stop()
        wait_for_text(log, "unreachable", proc)  # it found the server gone, and retries
        server.start()
        out, _ = proc.communicate(timeout=240)
    return proc, out, log.read_text()


def assert_waited_out(proc: subprocess.Popen, out: str, err: str, trials: int) -> None:
    """The sweep said the storage was gone and back, and ended at its count, exit 0."""
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "unreachable" in err and "is back after" in err, err
    assert f"{trials}/{trials} trials finished" in " ".join(out.split())


def run_lrbench(*args: str, results: Path | None = None, data_dir: Path | None = None,
                env: Mapping[str, str] | None = None,
                timeout: float = 600) -> subprocess.CompletedProcess:
    """``start_lrbench``, run to its end (at most ``timeout`` seconds)."""
    return subprocess.run(lrbench_command(*args, results=results, data_dir=data_dir),
                          cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def pytest_configure(config: pytest.Config) -> None:
    """Where Python writes no bytecode (PYTHONDONTWRITEBYTECODE, as on this project's
    machines), each ``lrbench`` process the tests start compiled the lrbench modules it
    imports anew (0.1-0.3 CPU-s of a smoke sweep's 3.4). Compile them once, before the
    tests (and pytest-xdist's workers) start: Python reads the cache where it writes none."""
    if sys.dont_write_bytecode and not hasattr(config, "workerinput"):
        compileall.compile_dir(REPO / "lrbench", quiet=1)


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
    require_mnist()
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
    require_mnist()
    raw_in, raw_out = DATA / "MNIST" / "raw", root / folder / "raw"
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
def results(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A results folder from real runs of the command line, on the MNIST sample.

    ``smoke`` (9 trials x 3 epochs) with 3 confirm seeds per family, and the tutorial's
    five runs (``dlwizard``), through worker processes and the journal storage. Under
    pytest-xdist, the first worker to ask makes it (~15 CPU-s) while the other waits, and
    each worker gets a copy of its own: its tests write reports into it.
    """
    require_mnist()
    if worker_id == "master":  # not under xdist
        return _make_results(tmp_path_factory.mktemp("results"))
    run_root = tmp_path_factory.getbasetemp().parent  # this run's, shared by its workers
    made = run_root / "results"
    with open(run_root / "results.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (run_root / "results.made").is_file():  # (not made, or a failed try)
            shutil.rmtree(made, ignore_errors=True)
            _make_results(made)
            (run_root / "results.made").touch()
    copy = tmp_path_factory.mktemp("results")
    shutil.copytree(made, copy, dirs_exist_ok=True)
    return copy


def _make_results(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    for args in (("sweep", "smoke", "--trials", "9", "--epochs", "3", "--workers", "2"),
                 ("confirm", "smoke", "--seeds", str(CONFIRM_SEEDS), "--workers", "2"),
                 ("sweep", "dlwizard", "--workers", "2")):
        done = run_lrbench(*args, results=folder, data_dir=DATA)
        assert done.returncode == 0, done.stderr
    return folder
