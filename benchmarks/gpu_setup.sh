# Sourced by the gpu_*.sh scripts: $OUT for their outputs, Fashion-MNIST from .gpudata/
# (its four *-ubyte.gz files, carried to the GPU machine) unpacked where --data-dir finds it.
OUT=${OUT:-/tmp/lrbench-gpu}
mkdir -p "$OUT"
DATA=/tmp/lrbench-data
mkdir -p $DATA/FashionMNIST/raw
for f in .gpudata/*.gz; do gunzip -c "$f" > "$DATA/FashionMNIST/raw/$(basename "$f" .gz)"; done
