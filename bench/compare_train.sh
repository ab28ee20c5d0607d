#!/usr/bin/env bash
# The reference program end to end on Debian's Fashion-MNIST, kiln against its PyTorch + Lightning
# Fabric peer (bench/peers/train_fabric.py), run one after the other with the same threads, epochs,
# seed and precision, REPEATS times alternating (default 1). Prints each run's per-epoch lines, then
# per precision one JSON line: median wall seconds of the whole process (start to exit: loading,
# training, evaluation), the last epoch's test accuracy of each run, and peer/kiln.
#   [REPEATS=5] bench/compare_train.sh BUILD PEER_PYTHON [EPOCHS] [THREADS] [PRECISIONS...]
#   REPEATS=5 bench/compare_train.sh build .venv-peers/bin/python 3 2 32-true bf16-mixed
# PEER_PYTHON: a Python with torch and lightning (bench/peers/setup.sh makes .venv-peers).
set -euo pipefail
build=${1:?build dir}; py=${2:?python with torch and lightning}; epochs=${3:-3}; threads=${4:-2}
shift $(( $# < 4 ? $# : 4 ))
precisions=("${@:-32-true}")
data=${DATA_DIR:-/usr/share/datasets/fashion-mnist}
seed=${SEED:-0}
reps=${REPEATS:-1}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
last_acc() { sed -n 's/.*Val Acc: *\([0-9.]*\)%.*/\1/p' "$1" | tail -1; }
echo "# $(date -u +%FT%TZ) $(git -C "$here" rev-parse --short HEAD) load: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A kw=() pw=() ka=() pa=()
for ((i = 0; i < reps; ++i)); do
  for p in "${precisions[@]}"; do
    echo "## run $i kiln $p"
    t0=$(date +%s.%N)
    OMP_NUM_THREADS=$threads "$build/examples/train_cifar10" --dataset fashion-mnist --data-dir "$data" \
      --accelerator cpu --precision "$p" --epochs "$epochs" --seed "$seed" --num-workers 2 \
      --checkpoint "$tmp/ck.safetensors" --log-dir "$tmp/logs" >"$tmp/kiln.log"
    kw[$p]+="$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}") "; ka[$p]+="$(last_acc "$tmp/kiln.log") "
    grep -E "Val Acc|img/s" "$tmp/kiln.log" || true
    echo "## run $i pytorch $p"
    t0=$(date +%s.%N)
    "$py" "$here/peers/train_fabric.py" --data-dir "$data" --precision "$p" --epochs "$epochs" \
      --seed "$seed" --threads "$threads" --num-workers 2 >"$tmp/peer.log" 2>/dev/null
    pw[$p]+="$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}") "; pa[$p]+="$(last_acc "$tmp/peer.log") "
    grep -E "Val Acc|img/s" "$tmp/peer.log" || true
    echo "# load: $(cut -d' ' -f1-3 /proc/loadavg)"
  done
done
for p in "${precisions[@]}"; do
  km=$(printf '%s\n' ${kw[$p]} | median); pm=$(printf '%s\n' ${pw[$p]} | median)
  echo "{\"bench\":\"compare_train\",\"precision\":\"$p\",\"epochs\":$epochs,\"threads\":$threads,\"repeats\":$reps,\"kiln_wall_s\":[${kw[$p]// /,}],\"peer_wall_s\":[${pw[$p]// /,}],\"kiln_median_s\":$km,\"peer_median_s\":$pm,\"speedup\":$(awk "BEGIN{printf \"%.2f\", $pm/$km}"),\"kiln_test_acc\":[${ka[$p]// /,}],\"peer_test_acc\":[${pa[$p]// /,}]}" | sed 's/,\]/]/g'
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
