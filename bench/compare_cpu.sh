#!/bin/bash
# kiln vs PyTorch on the reference CNN, CPU, alternating runs on the same machine so both see the
# same noise; prints each run, the medians and kiln/peer. The peer is the PyPI PyTorch of
# bench/peers/setup.sh (.venv-peers) unless PEER_PYTHON names another interpreter (Debian's
# python3-torch 1.13: PEER_PYTHON=/usr/bin/python3).
# PRECISIONS lists the precisions to compare (32-true and/or bf16-mixed: torch.autocast on the CPU).
#   [STEPS=20 WARMUP=5 PRECISIONS="32-true bf16-mixed" MODES="train:128 infer:256"] \
#     bench/compare_cpu.sh [build-dir] [repeats] [threads]
set -euo pipefail
build=${1:-build-perf}
reps=${2:-5}
threads=${3:-2}
steps=${STEPS:-20}
warmup=${WARMUP:-5}
precisions=${PRECISIONS:-32-true}
modes=${MODES:-train:128 infer:256}
here=$(cd "$(dirname "$0")" && pwd)
peer=${PEER_PYTHON:-$here/../.venv-peers/bin/python}
[[ -x "$peer" ]] || { echo "compare_cpu: no peer Python at $peer (run bench/peers/setup.sh or set PEER_PYTHON)" >&2; exit 2; }
rate() { sed -n 's/.*"images_per_s": *\([0-9.]*\).*/\1/p' | tail -1; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# Each repeat runs every precision for both, so a burst of load hits them alike.
for mode_batch in $modes; do
  mode=${mode_batch%:*}; batch=${mode_batch#*:}
  declare -A k=() t=()
  for ((i = 0; i < reps; ++i)); do
    for prec in $precisions; do
      kr=$("$build/bench/kiln_bench" --mode "$mode" --precision "$prec" --batch-size "$batch" --threads "$threads" --steps "$steps" --warmup "$warmup" | rate)
      tr=$(OMP_NUM_THREADS=$threads "$peer" "$here/peers/torch_cpu.py" --mode "$mode" --precision "$prec" --batch-size "$batch" --threads "$threads" --steps "$steps" --warmup "$warmup" | rate)
      k[$prec]+="$kr "; t[$prec]+="$tr "
      echo "$mode@$batch $prec run $i: kiln $kr torch $tr img/s" >&2
    done
  done
  for prec in $precisions; do
    km=$(printf '%s\n' ${k[$prec]} | median); tm=$(printf '%s\n' ${t[$prec]} | median)
    echo "{\"bench\":\"compare_cpu\",\"mode\":\"$mode\",\"precision\":\"$prec\",\"batch_size\":$batch,\"threads\":$threads,\"repeats\":$reps,\"kiln_images_per_s\":$km,\"torch_images_per_s\":$tm,\"ratio\":$(awk "BEGIN{printf \"%.2f\", $km/$tm}")}"
  done
  unset k t
done
