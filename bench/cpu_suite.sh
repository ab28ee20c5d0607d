#!/usr/bin/env bash
# Every CPU figure of bench/RESULTS.md in one run, for a quiet machine (nothing else running; the
# load average is printed before and after each part and a part that starts above 1.5 waits for it
# to fall). Logs go to OUT (default bench-logs/<UTC time>/, ignored by git), one file per part:
#   peak      kiln_bench --mode peak: the f32 FMA ceiling
#   profile   KILN_BENCH_PROFILE=1 train steps, fp32 and bf16-mixed: per-layer GFLOP/s against it
#   step      compare_cpu.sh: train@128 and infer@256, fp32 and bf16-mixed, vs the PyPI PyTorch
#   step-1.13 the same against Debian's python3-torch 1.13 (second column), when it is installed
#   recipe    compare_train.sh: 3 Fashion-MNIST epochs, train_cifar10 vs train_fabric.py
#   models    compare_models.sh: SDPA, the GPT step at one thread, ResNet-20 with a busy neighbour
#   store     kiln_bench_store: rendezvous of 2, 8, 32 processes, plain and after 1,000 hostile connections
#   bench/cpu_suite.sh [BUILD] [PARTS...]      # BUILD defaults to build; PARTS to all of the above
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
shift || true
parts=("$@")
[[ ${#parts[@]} -eq 0 ]] && parts=(peak profile step step-1.13 recipe models store)
reps=${REPEATS:-5}
out=${OUT:-$here/../bench-logs/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
load() { cut -d' ' -f1 /proc/loadavg; }
quiet() {  # waits (up to 5 minutes) for the 1-minute load average to fall below 1.5
  for _ in $(seq 60); do awk "BEGIN{exit !($(load) < 1.5)}" && return 0; sleep 5; done
  echo "cpu_suite: load $(load) stays above 1.5; the figures that follow are not from a quiet machine" >&2
}
{
  echo "commit $(git -C "$here" rev-parse --short HEAD)  $(date -u +%FT%TZ)"
  lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket)'
  echo "flags: $(grep -o -w -E 'avx2|fma|avx512f|avx512bw|avx512vl|avx512_vnni|avx512_bf16|amx_tile|amx_bf16|amx_int8' /proc/cpuinfo | sort -u | tr '\n' ' ')"
} | tee "$out/machine.txt"
for part in "${parts[@]}"; do
  quiet
  echo "== $part (load $(load))" | tee -a "$out/loads.txt"
  case $part in
    peak) "$build/bench/kiln_bench" --mode peak --threads 2 ;;
    profile)
      for p in 32-true bf16-mixed; do
        KILN_BENCH_PROFILE=1 "$build/bench/kiln_bench" --mode train --precision $p --batch-size 128 --threads 2 \
          --steps 20 --warmup 5
      done ;;
    step) PRECISIONS="32-true bf16-mixed" "$here/compare_cpu.sh" "$build" "$reps" 2 ;;
    step-1.13)
      if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
        PEER_PYTHON=/usr/bin/python3 PRECISIONS="32-true bf16-mixed" "$here/compare_cpu.sh" "$build" "$reps" 2
      else echo "Debian's python3-torch is not installed: no 1.13 column"; fi ;;
    recipe) REPEATS=$reps "$here/compare_train.sh" "$build" "$here/../.venv-peers/bin/python" 3 2 32-true ;;
    models) REPEATS=$reps "$here/compare_models.sh" "$build" ;;
    store)
      for n in 2 8 32; do "$build/distributed/tools/kiln_bench_store" rendezvous $n; done
      for n in 2 8 32; do "$build/distributed/tools/kiln_bench_store" hostile $n 10 1000; done ;;
    *) echo "cpu_suite: unknown part $part" >&2; exit 2 ;;
  esac >"$out/$part.log" 2>&1 || echo "cpu_suite: $part failed (see $out/$part.log)" | tee -a "$out/loads.txt"
  echo "   done (load $(load))" | tee -a "$out/loads.txt"
  grep -E '^\{|^\|' "$out/$part.log" | tail -12 || true
done
echo "logs in $out"
