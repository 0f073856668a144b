"""Data sets: a name and a data dir in, tensors on a device out.

This module decides *where* the files come from (torchvision only downloads them), reads
the IDX files with numpy, splits off a validation set, and moves everything to the
worker's device once. A user's data set, named by an import path, comes from their
loader instead (``lrbench.train.workload``).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import math
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

if TYPE_CHECKING:
    import torch
    from torchvision.datasets import MNIST

from lrbench.errors import DataNotFoundError, UserError
from lrbench.torch_import import import_torch
from lrbench.train import workload

log = logging.getLogger(__name__)

# torch is imported by the functions that make or read tensors, not with the module: the
# report and `lrbench list` read data set names, folders and sizes here, and a sweep's
# parent reads the arrays (numpy); importing torch would add ~1.4 s of CPU to each.

# Name -> torchvision dataset class. Imported lazily: torchvision costs a process seconds and
# memory (README, "Memory"), and workers get their images from the parent, never needing it.
DATASETS: dict[str, str] = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}
NUM_CLASSES = 10  # all three data sets
DATA_DIR_ENV = "LRBENCH_DATA_DIR"
CACHE_ENV = "LRBENCH_CACHE_DIR"

# The un-gzipped names torchvision looks for in <root>/<ClassName>/raw/ (same for all three).
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# Folders that may hold a data set as the four "<name>.gz" files side by side (not in
# torchvision's layout). Found ones are gunzipped once into the cache.
KNOWN_GZ_DIRS: dict[str, list[Path]] = {
    "fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")],  # apt: dataset-fashion-mnist
}
INSTALL_HINTS = {"fashion-mnist": "on Debian/Ubuntu: apt-get install dataset-fashion-mnist"}


# A built-in data set's arrays are numpy's: the parent of a sweep reads them, checks them,
# fingerprints them and sends them to its slots without importing torch (~1.4 s of CPU);
# ``split_to_device`` makes them tensors in the slot. A user's loader returns tensors.
Array = Union["np.ndarray", "torch.Tensor"]


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays field by field is ambiguous
class DatasetArrays:
    """A data set's arrays on the CPU, exactly as stored in its IDX files (numpy), or as a
    user's loader returned them (tensors: then "images" are any inputs, one row per
    example)."""

    name: str  # a built-in's name (DATASETS), or the user's loader's import path
    train_images: Array  # uint8 [N, 28, 28] for the built-ins
    train_labels: Array  # int64 [N]; a regression's float targets [N, D]
    test_images: Array  # uint8 [M, 28, 28] for the built-ins
    test_labels: Array  # int64 [M]
    root: Path  # the torchvision root the files were read from; a loader's module file
    num_classes: int = 10  # a regression's outputs, D

    @property
    def loss(self) -> str:
        """What its labels are for: class labels for cross-entropy, float targets for the
        mean squared error (lrbench.train.losses)."""
        return "mse" if _is_float(self.train_labels) else "cross_entropy"

    @property
    def built_in(self) -> bool:
        return self.name in DATASETS

    def examples(self, count: int) -> torch.Tensor:
        """The first ``count`` training inputs as a model sees them (flattened built-in
        images, scaled to [0, 1])."""
        return model_input(tensor(_as_rows(self, self.train_images[:count])))


def tensor(array: Array) -> torch.Tensor:
    """``array`` as a CPU tensor, sharing its memory (a numpy array of the built-ins)."""
    import torch

    return torch.as_tensor(array)


def _is_float(array: Array) -> bool:
    if isinstance(array, np.ndarray):
        return bool(np.issubdtype(array.dtype, np.floating))
    return bool(array.is_floating_point())


def _as_rows(arrays: DatasetArrays, inputs: torch.Tensor) -> torch.Tensor:
    """Built-in images flattened to 784 columns, as the built-in models read them; a
    user's inputs as their loader shaped them."""
    return inputs.reshape(len(inputs), -1) if arrays.built_in else inputs


@dataclass(frozen=True, eq=False)
class DeviceData:
    """Everything a worker trains on, already on its device.

    Built-in images stay uint8 (flattened to 784 columns): 47 MB for 60k images instead
    of 188 MB as float32. The trainer scales each batch with `model_input`. A user's
    inputs keep the shape and dtype their loader gave them.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    validation_is_test: bool  # validation_size == 0: validate on the test set, as the tutorial did
    device: torch.device
    built_in: bool = True  # MNIST's family, where a run near chance after epoch 1 has collapsed
    loss: str = "cross_entropy"  # or "mse": float targets (lrbench.train.losses)

    @property
    def chance(self) -> float | None:
        """The accuracy below which a run has collapsed: near chance on a built-in data
        set; None for a user's, where slow starts are normal (a transformer's plateau)."""
        return 1.0 / self.num_classes if self.built_in else None


def cache_dir() -> Path:
    """Where lrbench keeps downloads and materialised copies."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "lrbench"


def _folder(dataset: str) -> str:
    """The folder torchvision keeps ``dataset`` in (its class's name: MNIST, FashionMNIST)."""
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[dataset]


def _raw_dir(root: Path, folder: str) -> Path:
    return root / folder / "raw"


def _has_files(root: Path, folder: str) -> bool:
    return all((_raw_dir(root, folder) / name).is_file() for name in IDX_FILES)


def holds(root: str | Path, dataset: str) -> bool:
    """``root`` is a torchvision root with ``dataset``'s four files (a user's data set is
    in no folder: their loader finds it)."""
    return dataset in DATASETS and _has_files(Path(root), _folder(dataset))


def dataset_class(dataset: str) -> type[MNIST]:
    """The torchvision class that downloads ``dataset``."""
    folder = _folder(dataset)
    import torchvision.datasets

    return getattr(torchvision.datasets, folder)


def _read_idx(path: Path, dims: int) -> np.ndarray:
    """An IDX file of unsigned bytes with ``dims`` dimensions (images 3, labels 1).

    Read with numpy rather than torchvision: importing torchvision costs a sweep seconds,
    and torchvision is needed only to download.
    """
    raw = path.read_bytes()
    header = 4 + 4 * dims
    if len(raw) < header or raw[:3] != b"\x00\x00\x08" or raw[3] != dims:
        raise UserError(f"{path}: not valid IDX files (expected an IDX header for unsigned "
                        f"bytes in {dims} dimensions, found {raw[:4].hex() or 'nothing'})")
    shape = struct.unpack(f">{dims}I", raw[4:header])
    if len(raw) - header != math.prod(shape):
        raise UserError(f"{path}: not valid IDX files (its header says {shape}, "
                        f"{math.prod(shape):,} bytes, but it holds {len(raw) - header:,})")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape).copy()


def _read(dataset: str, root: Path) -> DatasetArrays:
    """Read both splits from a root known to hold the four files."""
    raw = _raw_dir(root, _folder(dataset))
    arrays = DatasetArrays(
        name=dataset,
        train_images=_read_idx(raw / "train-images-idx3-ubyte", 3),
        train_labels=_read_idx(raw / "train-labels-idx1-ubyte", 1).astype(np.int64),
        test_images=_read_idx(raw / "t10k-images-idx3-ubyte", 3),
        test_labels=_read_idx(raw / "t10k-labels-idx1-ubyte", 1).astype(np.int64),
        root=root,
        num_classes=NUM_CLASSES,
    )
    check_arrays(arrays, raw)
    return arrays


def check_arrays(arrays: DatasetArrays, raw: Path) -> None:
    """Refuse files that torchvision reads but no one could train on: images and labels
    that do not pair up, labels outside the classes, images that are not 28x28.

    (A count mismatch once trained and stored chance-level trials as COMPLETE.)
    """
    for split, images, labels in (("train", arrays.train_images, arrays.train_labels),
                                  ("t10k", arrays.test_images, arrays.test_labels)):
        image_file = raw / f"{split}-images-idx3-ubyte"
        label_file = raw / f"{split}-labels-idx1-ubyte"
        if images.ndim != 3 or tuple(images.shape[1:]) != (28, 28):
            raise UserError(f"{image_file}: images are {tuple(images.shape[1:])}, "
                            f"not 28x28")
        if len(images) != len(labels):
            raise UserError(f"{label_file} holds {len(labels):,} labels, but {image_file} "
                            f"holds {len(images):,} images: they must pair up")
        bad = np.flatnonzero((labels < 0) | (labels >= arrays.num_classes))
        if len(bad):
            index = int(bad[0])
            raise UserError(f"{label_file}: label {int(labels[index])} at index {index} is "
                            f"outside 0-{arrays.num_classes - 1} ({len(bad):,} such labels)")


def _missing_message(root: Path, source: str, dataset: str) -> str:
    raw = _raw_dir(root, _folder(dataset))
    missing = [n for n in IDX_FILES if not (raw / n).is_file()]
    msg = (
        f"data dir {root} ({source}) does not hold dataset {dataset!r}: "
        f"expected {raw}/ with {', '.join(IDX_FILES)} (un-gzipped IDX files); "
        f"missing: {', '.join(missing)}"
    )
    if any((raw / f"{n}.gz").is_file() for n in missing):
        msg += f"; gunzip the .gz files in {raw}"
    elif any((root / n).is_file() for n in IDX_FILES):  # a common slip: passing the raw folder
        msg += f"; the files are directly in {root}: move them to {raw}/"
    return msg


def _materialise(gz_dir: Path, raw: Path) -> None:
    """Gunzip the four files into `raw`; each appears atomically, so a crash or a
    concurrent sweep never leaves a truncated file that would pass as data."""
    raw.mkdir(parents=True, exist_ok=True)
    for name in IDX_FILES:
        with (
            gzip.open(gz_dir / f"{name}.gz", "rb") as src,
            tempfile.NamedTemporaryFile(dir=raw, prefix=f".{name}.", delete=False) as dst,
        ):
            shutil.copyfileobj(src, dst)
        os.replace(dst.name, raw / name)


def _download(cls: type[MNIST], cache: Path) -> None:
    """Download into a staging folder and move it into place only when complete:
    torchvision leaves an empty or half-filled raw/ folder behind when it fails."""
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=cache))
    try:
        cls(root=staging, train=True, download=True)  # fetches all four files
        if not _has_files(cache, cls.__name__):  # a concurrent sweep may have finished first
            shutil.rmtree(cache / cls.__name__, ignore_errors=True)
            os.replace(staging / cls.__name__, cache / cls.__name__)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_arrays(
    dataset: str, data_dir: str | Path | None = None, *, download: bool = True,
    source: str = "",
) -> DatasetArrays:
    """Load a data set's train and test tensors (CPU).

    Looks in order at: `data_dir`, else $LRBENCH_DATA_DIR (either one, when given, is
    the only place looked); the lrbench cache; KNOWN_GZ_DIRS; then downloads into the
    cache if `download`. Raises DataNotFoundError saying where to put the files. A
    user's data set (an import path) comes from their loader; ``data_dir`` is theirs to read,
    and ``source`` (the sweep file) is named in its errors.
    """
    if workload.is_import_path(dataset):
        import_torch()  # (their loader makes tensors)
        return workload.load_user_data(dataset, source)
    folder = _folder(dataset)
    source = "--data-dir" if data_dir is not None else DATA_DIR_ENV
    explicit = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if explicit:  # the user said where the data is: no guessing, no download
        root = Path(explicit).expanduser()
        if not _has_files(root, folder):
            raise DataNotFoundError(_missing_message(root, source, dataset))
        return _read(dataset, root)

    cache = cache_dir()
    if _has_files(cache, folder):
        return _read(dataset, cache)
    looked = [_raw_dir(cache, folder)]
    for gz_dir in KNOWN_GZ_DIRS.get(dataset, []):
        looked.append(gz_dir)
        if all((gz_dir / f"{n}.gz").is_file() for n in IDX_FILES):
            log.info("materialising %s from %s into %s", dataset, gz_dir, cache)
            _materialise(gz_dir, _raw_dir(cache, folder))
            return _read(dataset, cache)

    failure = "downloading is off"
    if download:
        log.info("downloading %s into %s", dataset, cache)
        try:
            _download(dataset_class(dataset), cache)
            return _read(dataset, cache)
        except (RuntimeError, OSError) as e:  # offline: RuntimeError wrapping URLErrors
            # torchvision's message: what failed on the first line, the last mirror's why last
            lines = str(e).strip().splitlines() or [repr(e)]
            cause = lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"
            failure = f"download failed: {cause}"
    hint = INSTALL_HINTS.get(dataset)
    raise DataNotFoundError(
        f"dataset {dataset!r} not found ({failure}). lrbench looked in: "
        f"{', '.join(map(str, looked))}. Put {', '.join(IDX_FILES)} (un-gzipped) in "
        f"<dir>/{folder}/raw/ and pass --data-dir <dir>, or set {DATA_DIR_ENV}=<dir>"
        + (f"; {hint}" if hint else "")
    )


def fingerprint(arrays: DatasetArrays) -> str:
    """A short digest of the images and labels exactly as read (shapes included): two
    folders of "MNIST" holding different images never share one. SHA-256, 16 hex digits."""
    digest = hashlib.sha256()
    for array in (arrays.train_images, arrays.train_labels, arrays.test_images,
                  arrays.test_labels):
        digest.update(repr(tuple(array.shape)).encode())
        digest.update(np.ascontiguousarray(array).tobytes() if isinstance(array, np.ndarray)
                      else array.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def validation_count(validation_size: float, n: int) -> int:
    """Turn a count or a fraction of the `n` training images into a count."""
    if isinstance(validation_size, bool) or not isinstance(validation_size, (int, float)):
        raise UserError(f"validation_size must be a count or a fraction, got {validation_size!r}")
    if isinstance(validation_size, float) and validation_size != 0:
        if not 0 < validation_size < 1:
            raise UserError(f"validation_size {validation_size!r}: a fraction must be in (0, 1)")
        count = max(1, round(validation_size * n))
    else:
        count = int(validation_size)
    if count < 0 or n - count < 1:
        raise UserError(
            f"validation_size {validation_size!r} leaves {n - count} of the {n} training "
            "images for training; it must leave at least 1"
        )
    return count


def split_to_device(
    arrays: DatasetArrays, validation_size: float, seed: int, device: str | torch.device
) -> DeviceData:
    """Split the training images into train/validation by `seed`; move all to `device`.

    validation_size: a count (>= 1), a fraction in (0, 1), or 0 for no held-out split
    (validation then uses the test set, as the Deep Learning Wizard tutorial did).
    """
    import torch

    n = len(arrays.train_images)
    n_val = validation_count(validation_size, n)
    train_labels = tensor(arrays.train_labels)
    images = _as_rows(arrays, tensor(arrays.train_images))
    # A CPU generator makes the split the same on every device and machine.
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values

    test_x = _as_rows(arrays, tensor(arrays.test_images)).to(device)
    test_y = tensor(arrays.test_labels).to(device)
    train_x = images[train_idx].to(device)
    if n_val == 0:
        val_x, val_y = test_x, test_y
    else:
        val_x, val_y = images[val_idx].to(device), train_labels[val_idx].to(device)
    return DeviceData(
        train_x=train_x,
        train_y=train_labels[train_idx].to(device),
        val_x=val_x,
        val_y=val_y,
        test_x=test_x,
        test_y=test_y,
        num_classes=arrays.num_classes,
        validation_is_test=n_val == 0,
        device=train_x.device,  # normalised: "cuda" becomes cuda:0
        built_in=arrays.built_in,
        loss=arrays.loss,
    )


def model_input(x: torch.Tensor) -> torch.Tensor:
    """A batch as the model reads it: uint8 pixels scaled to [0, 1] floats exactly as
    torchvision's ToTensor does (so results match the tutorial's pipeline bit for bit);
    any other inputs (a user's floats, token ids) as they are."""
    import torch

    return x.float().div_(255) if x.dtype == torch.uint8 else x
