#!/bin/bash
# One kiln_bench, two libkiln.so: did a change to the library move a benchmark? The binary of
# BENCH_FROM (default: the first build) runs against each build's library in turn
# (LD_LIBRARY_PATH goes before kiln_bench's RUNPATH), so the harness is the same instructions in
# both runs and only the library differs. Pairs alternate their order (A B, B A, ...) so drift in
# the machine's speed hits both alike. Prints every run, the medians, B/A and how many pairs B won.
# METRIC names the JSON field compared, higher being better (default images_per_s; the gpt mode
# prints tokens_per_second).
# The two libraries must share the ABI kiln_bench was built against: a missing symbol stops the
# run at load time (LD_BIND_NOW), not midway.
#   bench/compare_builds.sh BUILD_A BUILD_B [PAIRS] [-- kiln_bench args]
#   e.g. bench/compare_builds.sh ../before/build build 10 -- --mode train --batch-size 128 --threads 2
set -euo pipefail
[[ $# -ge 2 ]] || { sed -n '2,10p' "$0" >&2; exit 2; }
a=$(cd "$1" && pwd)
b=$(cd "$2" && pwd)
shift 2
pairs=10
if [[ $# -gt 0 && $1 != -- ]]; then pairs=$1; shift; fi
[[ ${1:-} == -- ]] && shift
args=("$@")
[[ ${#args[@]} -eq 0 ]] && args=(--mode train --precision 32-true --batch-size 128 --threads 2 --steps 20 --warmup 5)
bench=${BENCH_FROM:-$a}/bench/kiln_bench
for lib in "$a" "$b"; do
  [[ -e $lib/libkiln.so ]] || { echo "compare_builds: no libkiln.so in $lib (a shared build is needed)" >&2; exit 2; }
done
[[ -x $bench ]] || { echo "compare_builds: no kiln_bench at $bench" >&2; exit 2; }
metric=${METRIC:-images_per_s}
rate() { sed -n "s/.*\"$metric\": *\([0-9.]*\).*/\1/p" | tail -1; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
run() { LD_BIND_NOW=1 LD_LIBRARY_PATH=$1 "$bench" "${args[@]}" | rate; }
echo "compare_builds: $bench ${args[*]}; A=$a B=$b; load $(cut -d' ' -f1 /proc/loadavg)" >&2
ra=() rb=() wins=0
for ((i = 0; i < pairs; ++i)); do
  if ((i % 2 == 0)); then x=$(run "$a"); y=$(run "$b"); else y=$(run "$b"); x=$(run "$a"); fi
  [[ -n $x && -n $y ]] || { echo "compare_builds: kiln_bench printed no $metric" >&2; exit 1; }
  ra+=("$x"); rb+=("$y")
  awk "BEGIN{exit !($y > $x)}" && wins=$((wins + 1))
  echo "pair $i: A $x  B $y ($metric)" >&2
done
ma=$(printf '%s\n' "${ra[@]}" | median)
mb=$(printf '%s\n' "${rb[@]}" | median)
echo "compare_builds: load $(cut -d' ' -f1 /proc/loadavg) after" >&2
echo "{\"bench\":\"compare_builds\",\"metric\":\"$metric\",\"pairs\":$pairs,\"a\":$ma,\"b\":$mb,\"b_over_a\":$(awk "BEGIN{printf \"%.3f\", $mb/$ma}"),\"b_faster_pairs\":$wins}"
