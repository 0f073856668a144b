#!/usr/bin/env bash
# One-shot GPU evidence, run on a lent GPU machine (this project's `device` tool) with
# Fashion-MNIST's four *-ubyte.gz files in .gpudata/ and lrbench importable (PYTHONPATH).
# Writes its figures to $OUT. Not part of the test suite: tests must pass without a GPU.
set -uo pipefail
source "$(dirname "$0")/gpu_setup.sh"  # OUT, DATA

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  nproc
  python3 -c "import torch, optuna; print('torch', torch.__version__, 'optuna', optuna.__version__)"
} 2>&1 | tee "$OUT/machine.txt"

# 1. Single-model speed on the GPU: lrbench's trainer and the tutorial's loop.
timeout 200 python3 benchmarks/bench_trainer.py --device cuda --dataset fashion-mnist \
  --data-dir $DATA --epochs 2 --rounds 1 --out "$OUT/trainer_cuda.json" 2>&1 \
  | tee "$OUT/trainer_cuda.txt"

# 2. A sweep on the GPU slot alone, then on every device (1 GPU slot + CPU slots).
for mode in cuda auto; do
  trials=$([ $mode = cuda ] && echo 6 || echo 32)
  timeout 150 python3 -m lrbench sweep smoke --dataset fashion-mnist --data-dir $DATA \
    --device $mode --trials $trials --epochs 2 --study smoke-$mode \
    --results /tmp/lrbench-results 2>&1 | tee "$OUT/sweep_$mode.txt"
done
cp /tmp/lrbench-results/lrbench.journal "$OUT/gpu_sweeps.journal"
