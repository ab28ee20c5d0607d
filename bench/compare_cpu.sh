#!/bin/bash
# kiln vs PyTorch (Debian's python3-torch + OpenBLAS) on the reference CNN, CPU, alternating runs on
# the same machine so both see the same noise; prints each run, the medians and kiln/peer.
#   [STEPS=20 WARMUP=5] bench/compare_cpu.sh [build-dir] [repeats] [threads]
set -euo pipefail
build=${1:-build-perf}
reps=${2:-5}
threads=${3:-2}
steps=${STEPS:-20}
warmup=${WARMUP:-5}
here=$(cd "$(dirname "$0")" && pwd)
rate() { sed -n 's/.*"images_per_s": *\([0-9.]*\).*/\1/p' | tail -1; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for mode_batch in train:128 infer:256; do
  mode=${mode_batch%:*}; batch=${mode_batch#*:}
  k=(); t=()
  for ((i = 0; i < reps; ++i)); do
    k+=("$("$build/bench/kiln_bench" --mode "$mode" --batch-size "$batch" --threads "$threads" --steps "$steps" --warmup "$warmup" | rate)")
    t+=("$(OMP_NUM_THREADS=$threads /usr/bin/python3 "$here/peers/torch_cpu.py" --mode "$mode" --batch-size "$batch" --threads "$threads" --steps "$steps" --warmup "$warmup" | rate)")
    echo "$mode@$batch run $i: kiln ${k[-1]} torch ${t[-1]} img/s" >&2
  done
  km=$(printf '%s\n' "${k[@]}" | median); tm=$(printf '%s\n' "${t[@]}" | median)
  echo "{\"bench\":\"compare_cpu\",\"mode\":\"$mode\",\"batch_size\":$batch,\"threads\":$threads,\"repeats\":$reps,\"kiln_images_per_s\":$km,\"torch_images_per_s\":$tm,\"ratio\":$(awk "BEGIN{printf \"%.2f\", $km/$tm}")}"
done
