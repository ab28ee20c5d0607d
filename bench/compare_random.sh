#!/bin/bash
# kiln's CPU random kernels (rand, randn, the dropout mask's bernoulli) against PyTorch's in-place
# fills on a float32 tensor of 2^24 elements, alternating runs on the same machine; prints each
# run, the medians and PyTorch/kiln (above 1: kiln is faster). The peer is .venv-peers unless
# PEER_PYTHON names another interpreter.
#   bench/compare_random.sh [build-dir] [repeats] [threads]
set -euo pipefail
build=${1:-build}
reps=${2:-5}
threads=${3:-2}
here=$(cd "$(dirname "$0")" && pwd)
peer=${PEER_PYTHON:-$here/../.venv-peers/bin/python}
[[ -x "$peer" ]] || { echo "compare_random: no peer Python at $peer (run bench/peers/setup.sh or set PEER_PYTHON)" >&2; exit 2; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ms_of() { grep -o "\"kernel\": *\"random $1 f32\"[^}]*" | grep -o '"ms": *[0-9.]*' | grep -o '[0-9.]*$'; }
kinds=(uniform normal bernoulli)
declare -A k=() t=()
for ((i = 0; i < reps; ++i)); do
  kout=$("$build/bench/kiln_bench" --mode kernels --threads "$threads" --filter random | tail -1 | sed 's/},{/}\n{/g')
  tout=$(OMP_NUM_THREADS=$threads "$peer" "$here/peers/random_torch.py" --threads "$threads")
  for kind in "${kinds[@]}"; do
    kr=$(ms_of "$kind" <<<"$kout"); tr=$(ms_of "$kind" <<<"$tout")
    k[$kind]+="$kr "; t[$kind]+="$tr "
    echo "run $i $kind: kiln $kr ms torch $tr ms" >&2
  done
done
for kind in "${kinds[@]}"; do
  km=$(printf '%s\n' ${k[$kind]} | median); tm=$(printf '%s\n' ${t[$kind]} | median)
  echo "{\"bench\":\"compare_random\",\"kernel\":\"$kind f32\",\"elements\":16777216,\"threads\":$threads,\"repeats\":$reps,\"kiln_ms\":$km,\"torch_ms\":$tm,\"torch_over_kiln\":$(awk "BEGIN{printf \"%.2f\", $tm/$km}")}"
done
