"""The stacked SGD update on a CPU: torch's fused kernel (once per trial) against the eager
update (once per stack), per model size and K.

    python benchmarks/bench_sgd_update.py

``StackedSGD`` picks the fused kernel only for trials of at least
``FUSED_CPU_MIN_WEIGHTS`` weights; this script shows where the two cross. One torch
thread, Nesterov momentum 0.9, 200 timed steps after one untimed step (which makes the
momentum buffers).
"""

from __future__ import annotations

import time

import torch
from machine import cpu_cores, cpu_model  # benchmarks/machine.py

from lrbench.train import stacked_optim
from lrbench.train.stacked_optim import StackedSGD
from lrbench.train.trial import OptimizerConfig

MODELS = {"logreg": [(784, 10), (10,)], "fnn": [(784, 100), (100,), (100, 10), (10,)]}


def microseconds_per_step(shapes: list[tuple[int, ...]], k: int, fused: bool,
                          steps: int = 200) -> float:
    params = [torch.randn(k, *shape) for shape in shapes]
    grads = tuple(torch.randn(k, *shape) for shape in shapes)
    lr = torch.rand(k)
    optimizer = StackedSGD(OptimizerConfig("sgd", momentum=0.9, nesterov=True))
    threshold = stacked_optim.FUSED_CPU_MIN_WEIGHTS
    stacked_optim.FUSED_CPU_MIN_WEIGHTS = 0 if fused else 2**62
    try:
        optimizer.step(params, grads, lr)
        started = time.perf_counter()
        for _ in range(steps):
            optimizer.step(params, grads, lr)
        return (time.perf_counter() - started) / steps * 1e6
    finally:
        stacked_optim.FUSED_CPU_MIN_WEIGHTS = threshold


def main() -> None:
    torch.set_num_threads(1)
    if stacked_optim._FUSED_CPU_SGD is None:
        raise SystemExit("this torch has no torch._fused_sgd_: only the eager update runs")
    print(f"{cpu_model()}, {cpu_cores()} cores, torch {torch.__version__}, 1 thread")
    print("model   weights     K   eager us  fused us  (per trial: eager, fused)")
    for name, shapes in MODELS.items():
        weights = sum(torch.Size(shape).numel() for shape in shapes)
        for k in (1, 4, 8, 16, 64, 256):
            eager = microseconds_per_step(shapes, k, fused=False)
            fused = microseconds_per_step(shapes, k, fused=True)
            print(f"{name:<7} {weights:>7} {k:>5} {eager:>10.1f} {fused:>9.1f}  "
                  f"({eager / k:.1f}, {fused / k:.1f})")


if __name__ == "__main__":
    main()
