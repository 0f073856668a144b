#!/usr/bin/env bash
# GPU evidence for workloads of your own (examples/digits, examples/modular), run on a lent
# GPU machine (the `device` tool) with lrbench importable. Not part of the test suite; no
# data to carry (digits needs scikit-learn, else it is skipped with a line saying so).
# Writes its outputs to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/lrbench-gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/machine.txt"

# 1. The generic torch.func path on the GPU: model-epochs/s of both examples, sequential
#    and stacked at K = 16 ... 1,024, each stack checked against its trials trained alone
#    (exit 1 beyond 1 point of test accuracy).
timeout 240 python3 benchmarks/bench_workloads.py --device cuda --k 16,256,1024 2>&1 \
  | grep -v "^W" | tee "$OUT/workloads.txt"

# 2. The transformer's compare sweep end to end on the GPU (72 trials x 60 epochs), then
#    its report: the wall times to set beside the CPU's in the README.
/usr/bin/time -f "sweep wall %e s" timeout 300 python3 -m lrbench sweep \
  examples/modular/modular.toml --device cuda --results /tmp/modular 2>&1 | tail -16 \
  | tee "$OUT/modular_sweep.txt"
