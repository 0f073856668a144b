#!/usr/bin/env bash
# Issue "Keep the engine fed", GPU evidence: the 1,000-trial x 10-epoch Fashion-MNIST `all`
# sweep end to end on one GPU, against bench_batched's rate at the same K and precision,
# in the same run on the same GPU. Run on a lent GPU machine (the `device` tool) with:
#   .gpudata/  Fashion-MNIST's four *-ubyte.gz files (copied from the Debian package)
#   .whl/      optuna 5.0 and its pure-Python needs (the GPU image has no Optuna)
# Writes its figures to $OUT. Not part of the test suite.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
source "$(dirname "$0")/gpu_setup.sh"  # OUT, DATA (Fashion-MNIST unpacked)

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc
  python3 -c "import torch, optuna; print('torch', torch.__version__, 'optuna', optuna.__version__)"
} 2>&1 | tee "$OUT/machine.txt"

# 1. The engine alone at the sweep's K (250: sampled trials in flight at most a quarter of
#    the slot's share) and at K = 1,000 (every trial at once), fp32 (the sweep's default).
timeout 150 python3 benchmarks/bench_batched.py --device cuda --dataset fashion-mnist \
  --data-dir $DATA --k ${BENCH_KS:-250,1000} --epochs 3 --no-seed --out "$OUT/bench_batched.json" 2>&1 \
  | tee "$OUT/bench_batched.txt"

# 2. The sweep end to end, through the command line, at the K it sizes (250) and at
#    --batch-trials 1000; wall time from the shell.
for K in ${KS:-auto 1000}; do
  results=/tmp/lrbench-results-$K
  flag=$([ $K = auto ] || echo "--batch-trials $K")
  start=$(date +%s.%N)
  timeout 240 python3 -m lrbench sweep all --dataset fashion-mnist --data-dir $DATA \
    --protocol search --trials 1000 --epochs 10 --device cuda --results $results $flag 2>&1 \
    | grep -v "│" | tee "$OUT/sweep_$K.txt"
  end=$(date +%s.%N)
  echo "end-to-end wall: $(python3 -c "print(round($end - $start, 1))") s" \
    | tee -a "$OUT/sweep_$K.txt"
  JOURNAL=$results/lrbench.journal python3 - <<'PY' 2>&1 | tee -a "$OUT/sweep_$K.txt"
import os
import optuna
from lrbench.sweep.record import record_of
from lrbench.sweep.storage import open_storage
study = optuna.load_study(study_name="all", storage=open_storage(os.environ["JOURNAL"]))
records = [r for t in study.trials if (r := record_of(t)) is not None]
epochs = sum(r.epochs_run for r in records)
starts = [t.datetime_start for t in study.trials if t.datetime_start]
ends = [t.datetime_complete for t in study.trials if t.datetime_complete]
span = (max(ends) - min(starts)).total_seconds()
print(f"trials {len(records)}, model-epochs {epochs}, first ask to last end {span:.1f} s, "
      f"{epochs / span:.0f} model-epochs/s over that span; K per record: "
      f"{sorted({r.batch_trials for r in records})[-1]} max; best val {study.best_value:.4f}")
PY
done
