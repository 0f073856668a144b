"""Which devices exist, and how many worker slots each gets.

A slot is one worker process pinned to one device. GPUs get one slot each (a small
model cannot fill a GPU, but two processes on one GPU only fight over it); the CPU
gets one slot per remaining core with one torch thread each, because tiny models
scale better across processes than across threads.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from lrbench.errors import UserError
from lrbench.torch_import import import_torch


@dataclass(frozen=True)
class Slot:
    index: int
    device: str  # "cpu" or "cuda:N"
    threads: int  # torch intra-op threads for this slot
    worker: str = ""  # on a Dask cluster: the cluster worker it is pinned to (processes.cluster)
    host: str = ""  # ... and that worker's host name


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# What a GPU that torch can use leaves on Linux: NVIDIA's and WSL's device nodes, AMD's
# (ROCm builds of torch count AMD GPUs as "cuda"), NVIDIA's driver in /proc.
GPU_DRIVER_PATHS = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg", "/dev/kfd",
                    "/proc/driver/nvidia")


def gpus() -> list[str]:
    """The CUDA devices torch sees. On Linux without any GPU driver: none, found without
    importing torch (~1.4 s of CPU that a CPU sweep's parent needs for nothing else)."""
    if sys.platform.startswith("linux") and not any(map(os.path.exists, GPU_DRIVER_PATHS)):
        return []
    torch = import_torch()
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def _parse_devices(spec: str) -> list[str]:
    """``auto`` / ``cpu`` / ``cuda`` / ``cuda:0,cuda:1`` -> explicit device names."""
    if spec == "cpu":  # (no GPU to count: on a GPU machine that would import torch)
        return ["cpu"]
    available = gpus()
    if spec == "auto":
        return available + ["cpu"]
    if spec == "cuda":
        if not available:
            raise UserError("--device cuda: no CUDA GPU is visible to torch on this machine")
        return available
    devices = [d.strip() for d in spec.split(",") if d.strip()]
    for name in devices:
        if name == "cpu":
            continue
        if not name.startswith("cuda:") or not name[5:].isdigit():
            raise UserError(f"--device {spec}: {name!r} is not cpu, cuda or cuda:N")
        if name not in available:
            raise UserError(f"--device {spec}: {name} does not exist "
                            f"(visible GPUs: {', '.join(available) or 'none'})")
    if not devices:
        raise UserError(f"--device {spec!r}: names no device")
    return devices


# Slots per core or GPU at most: past a few, more slots only thrash memory (1,000 slots
# on 2 cores / 24 GB started no trial and ended in the OOM killer).
SLOTS_PER_DEVICE = 4


def plan_slots(device: str = "auto", workers: int | None = None,
               cores: int | None = None) -> list[Slot]:
    """One slot per GPU, then CPU slots on the cores the GPU slots leave free."""
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be >= 1, but got {workers}")
    cores = cores or cpu_cores()
    devices = _parse_devices(device)
    used = (cores if "cpu" in devices else 0) + sum(d != "cpu" for d in devices)
    most = SLOTS_PER_DEVICE * used
    if workers is not None and workers > most:
        raise UserError(f"--workers {workers}: at most {most} on this machine "
                        f"({SLOTS_PER_DEVICE} per core and GPU used: --device {device})")
    gpu_devices = [d for d in devices if d != "cpu"]
    use_cpu = "cpu" in devices
    if workers is None:
        # Each GPU slot keeps one core busy feeding its GPU.
        cpu_slots = max(0, cores - len(gpu_devices)) if use_cpu else 0
        if use_cpu and not gpu_devices:
            cpu_slots = max(1, cpu_slots)
        names = gpu_devices + ["cpu"] * cpu_slots
    else:
        # GPUs first, then the CPU; without the CPU, several slots share each GPU.
        if use_cpu:
            names = (gpu_devices + ["cpu"] * workers)[:workers]
        else:
            names = [gpu_devices[i % len(gpu_devices)] for i in range(workers)]
    cpu_count = names.count("cpu")
    gpu_slots = len(names) - cpu_count
    threads = max(1, (cores - gpu_slots) // cpu_count) if cpu_count else 1
    return [Slot(i, name, threads if name == "cpu" else 1) for i, name in enumerate(names)]


def configure_process(slot: Slot) -> None:
    """Set up a worker process for its slot (call once, before any training)."""
    import torch

    torch.set_num_threads(slot.threads)  # slots share the cores; don't oversubscribe them
    # Denormal floats (as momentum buffers decay) are far slower on x86 CPUs: without the
    # flush, epochs crept slower and slower (the README's trainer section has the figures).
    torch.set_flush_denormal(True)
    if slot.device.startswith("cuda"):
        torch.cuda.set_device(slot.device)
