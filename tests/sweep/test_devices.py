"""Tests for lrbench.sweep.devices.plan_slots: which worker slots a sweep starts where.

The visible GPUs are monkeypatched, so every case runs on a CPU-only machine.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from lrbench.errors import UserError
from lrbench.sweep import devices
from lrbench.sweep.devices import Slot, plan_slots

TWO_GPUS = ["cuda:0", "cuda:1"]


@pytest.fixture
def gpus(monkeypatch):
    """Call with the GPU names torch should report."""
    def set_gpus(names: list[str]) -> None:
        monkeypatch.setattr(devices, "gpus", lambda: list(names))
    set_gpus([])
    return set_gpus


def layout(slots: list[Slot]) -> list[tuple[str, int]]:
    assert [s.index for s in slots] == list(range(len(slots)))  # indices seed the samplers
    return [(s.device, s.threads) for s in slots]


@pytest.mark.parametrize("device, workers, cores, gpu_names, expected", [
    # auto, no GPU: one single-threaded slot per core
    ("auto", None, 2, [], [("cpu", 1)] * 2),
    ("auto", None, 1, [], [("cpu", 1)]),
    # auto with GPUs: one slot per GPU, each keeping a core busy; the rest are CPU slots
    ("auto", None, 16, TWO_GPUS, [("cuda:0", 1), ("cuda:1", 1)] + [("cpu", 1)] * 14),
    # GPUs that use up every core still leave no CPU slot (and never a negative count)
    ("auto", None, 2, TWO_GPUS, [("cuda:0", 1), ("cuda:1", 1)]),
    ("auto", None, 1, TWO_GPUS, [("cuda:0", 1), ("cuda:1", 1)]),
    # one worker on the CPU gets every core as torch threads
    ("cpu", 1, 2, [], [("cpu", 2)]),
    ("cpu", None, 4, TWO_GPUS, [("cpu", 1)] * 4),
    ("cpu", 3, 8, [], [("cpu", 2)] * 3),
    # GPUs first when workers are counted, then the CPU with the cores left
    ("auto", 3, 16, TWO_GPUS, [("cuda:0", 1), ("cuda:1", 1), ("cpu", 14)]),
    ("auto", 1, 16, TWO_GPUS, [("cuda:0", 1)]),
    # only GPUs: several slots share them round robin
    ("cuda", None, 16, TWO_GPUS, [("cuda:0", 1), ("cuda:1", 1)]),
    ("cuda", 3, 16, TWO_GPUS, [("cuda:0", 1), ("cuda:1", 1), ("cuda:0", 1)]),
    # an explicit list
    ("cuda:0,cuda:1", None, 16, TWO_GPUS, [("cuda:0", 1), ("cuda:1", 1)]),
    ("cuda:1", None, 16, TWO_GPUS, [("cuda:1", 1)]),
    (" cuda:1 , cpu ", None, 4, TWO_GPUS, [("cuda:1", 1)] + [("cpu", 1)] * 3),
])
def test_plan_slots(gpus, device, workers, cores, gpu_names, expected):
    gpus(gpu_names)
    assert layout(plan_slots(device, workers, cores)) == expected


def test_default_is_auto_on_this_machines_cores(gpus, monkeypatch):
    monkeypatch.setattr(devices, "cpu_cores", lambda: 3)
    assert layout(plan_slots()) == [("cpu", 1)] * 3


@pytest.mark.parametrize("device, gpu_names, names", [
    ("cuda", [], ["cuda", "no CUDA GPU"]),
    ("gpu", TWO_GPUS, ["'gpu'", "cpu, cuda or cuda:N"]),
    ("cuda:x", TWO_GPUS, ["'cuda:x'"]),
    ("cuda:", TWO_GPUS, ["'cuda:'"]),
    ("cpu,cuda0", TWO_GPUS, ["'cuda0'"]),
    ("cuda:5", TWO_GPUS, ["cuda:5", "does not exist", "cuda:0, cuda:1"]),
    ("cuda:0", [], ["cuda:0", "does not exist", "none"]),
    (",", TWO_GPUS, ["names no device"]),
])
def test_bad_device_names_the_value(gpus, device, gpu_names, names):
    gpus(gpu_names)
    with pytest.raises(UserError) as err:
        plan_slots(device, None, 4)
    for part in names:
        assert part in str(err.value)


@pytest.mark.parametrize("workers", [0, -1])
def test_workers_below_one_is_refused(gpus, workers):
    with pytest.raises(UserError, match=f"--workers must be >= 1, but got {workers}"):
        plan_slots("cpu", workers, 2)


def test_cpu_alone_never_counts_gpus(monkeypatch) -> None:
    """Counting them would import torch in the sweep's parent on a GPU machine."""
    def counted() -> list[str]:
        raise AssertionError("--device cpu counted the GPUs")
    monkeypatch.setattr(devices, "gpus", counted)
    assert layout(plan_slots("cpu", workers=2)) == [("cpu", 1), ("cpu", 1)]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the driver paths are Linux's")
def test_without_a_gpu_driver_there_is_no_gpu_and_torch_is_not_imported(tmp_path) -> None:
    """On Linux with none of the driver's paths, ``gpus`` answers without torch; with one
    of them (a file standing in for it here), it asks torch."""
    script = (
        "import sys\n"
        "from lrbench.sweep import devices\n"
        "devices.GPU_DRIVER_PATHS = (sys.argv[1],)\n"
        "print(devices.gpus(), 'torch' in sys.modules)\n")
    absent = subprocess.run([sys.executable, "-c", script, str(tmp_path / "nvidiactl")],
                            capture_output=True, text=True, timeout=120, check=True)
    assert absent.stdout.split() == ["[]", "False"]
    (tmp_path / "nvidiactl").touch()
    present = subprocess.run([sys.executable, "-c", script, str(tmp_path / "nvidiactl")],
                             capture_output=True, text=True, timeout=120, check=True)
    assert present.stdout.split()[-1] == "True"  # torch counted them (none on this machine)
