#!/usr/bin/env bash
# The reference program end to end on Debian's Fashion-MNIST, kiln against its PyTorch + Lightning
# Fabric peer (bench/peers/train_fabric.py), run one after the other with the same threads, epochs,
# seed and precision. Prints each run's per-epoch lines and JSON summary.
#   bench/compare_train.sh BUILD PEER_PYTHON [EPOCHS] [THREADS] [PRECISIONS...]
#   bench/compare_train.sh build .venv-peers/bin/python 3 2 32-true bf16-mixed
# PEER_PYTHON: a Python with torch and lightning (bench/peers/setup.sh makes .venv-peers).
set -euo pipefail
build=${1:?build dir}; py=${2:?python with torch and lightning}; epochs=${3:-3}; threads=${4:-2}
shift $(( $# < 4 ? $# : 4 ))
precisions=("${@:-32-true}")
data=${DATA_DIR:-/usr/share/datasets/fashion-mnist}
seed=${SEED:-0}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "# $(date -u +%FT%TZ) $(git -C "$here" rev-parse --short HEAD) load: $(cut -d' ' -f1-3 /proc/loadavg)"
for p in "${precisions[@]}"; do
  echo "## kiln $p"
  OMP_NUM_THREADS=$threads "$build/examples/train_cifar10" --dataset fashion-mnist --data-dir "$data" \
    --accelerator cpu --precision "$p" --epochs "$epochs" --seed "$seed" --num-workers 2 \
    --checkpoint "$tmp/ck.safetensors" --log-dir "$tmp/logs" | grep -E "Val Acc|img/s|^\{"
  echo "## pytorch $p"
  "$py" "$here/peers/train_fabric.py" --data-dir "$data" --precision "$p" --epochs "$epochs" \
    --seed "$seed" --threads "$threads" --num-workers 2 2>/dev/null | grep -E "Val Acc|img/s|^\{"
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
