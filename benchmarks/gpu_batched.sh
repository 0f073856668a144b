#!/usr/bin/env bash
# One-shot GPU evidence for the batched engine, run on a lent GPU machine (the `device`
# tool) with Fashion-MNIST's *-ubyte.gz files in .gpudata/ and lrbench importable.
# Writes figures and the sweep's journal to $OUT. Not part of the test suite.
set -uo pipefail
source "$(dirname "$0")/gpu_setup.sh"  # OUT, DATA

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, optuna; print('torch', torch.__version__, 'optuna', optuna.__version__)"
  python3 -c "import triton; print('triton', triton.__version__)"
} 2>&1 | tee "$OUT/machine.txt"

# 1. Batched == sequential on the GPU (3 schedules, 3 epochs; eager and fused update).
timeout 120 python3 benchmarks/gpu_equivalence.py $DATA 2>&1 | grep -v "^W" \
  | tee "$OUT/equivalence.txt"

# 2. Model-epochs/s: the seed's loop, sequential, batched K = 1..4096, in one process each;
#    then what TF32 matmuls and the fused (compiled) SGD update add.
K=1,64,256,1024,4096
timeout 150 python3 benchmarks/bench_batched.py --device cuda --dataset fashion-mnist \
  --data-dir $DATA --k $K --out "$OUT/batched_fp32.json" 2>&1 | tee "$OUT/batched_fp32.txt"
timeout 150 python3 benchmarks/bench_batched.py --device cuda --dataset fashion-mnist \
  --data-dir $DATA --k $K --no-seed --tf32 --fused --out "$OUT/batched_tf32_fused.json" 2>&1 \
  | grep -v "^W" | tee "$OUT/batched_tf32_fused.txt"

# 2b. The engine's generic torch.func forward against the FNN's hand-written one (the
#     "your own model" issue: at >= 0.8x the built-ins move onto the generic path).
timeout 120 python3 benchmarks/bench_batched.py --device cuda --dataset fashion-mnist \
  --data-dir $DATA --k 256,4096 --no-seed --generic 2>&1 | grep -v "^W" \
  | tee "$OUT/batched_generic.txt"

# 3. A full sweep through the command line: 1,000 trials x 10 epochs on the GPU alone.
timeout 420 python3 -m lrbench sweep all --dataset fashion-mnist --data-dir $DATA \
  --device cuda --engine batched --batch-trials 250 --protocol search --trials 1000 --epochs 10 \
  --study gpu-1000 --results /tmp/sweep 2>&1 | tail -25 | tee "$OUT/sweep1000.txt"
gzip -c /tmp/sweep/lrbench.journal > "$OUT/gpu-1000.journal.gz"  # one file: the tool returns few
