#!/usr/bin/env bash
# One-shot check of the CUDA backend on a GPU machine without network or apt: configure with the
# header-only dependencies from .deps (scripts/fetch-gpu-deps.sh), build the library, the gpu test
# suite and kiln_bench for sm_90, then run the gpu suite, the same suite under compute-sanitizer
# memcheck, the kernel benchmarks, the training step (eager and replayed as a CUDA graph, beside
# PyTorch + Lightning Fabric) and the recipe end to end (train_cifar10, 20 epochs of random
# CIFAR-shaped data, beside bench/peers/seed_cifar10.py on the same files). Every step runs
# whatever happened before (no early exit), with its own time limit, and writes one flat log;
# summary.txt holds each step's exit code.
#   scripts/gpu-check.sh LOGDIR      # LOGDIR/{build,gpu-tests,bench-kernels,train,memcheck}.log, summary.txt
set -uo pipefail
LOG=${1:?usage: scripts/gpu-check.sh LOGDIR}
mkdir -p "$LOG"
LOG=$(cd "$LOG" && pwd)
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${KILN_GPU_BUILD:-$ROOT/build-gpu-check}
ARCH=${KILN_GPU_ARCH:-90}
DEPS=$ROOT/.deps/usr
SUMMARY=$LOG/summary.txt
: > "$SUMMARY"
T0=$(date +%s)

export PATH=/usr/local/cuda/bin:$PATH
if [ -d "$DEPS" ]; then
  export PKG_CONFIG_PATH=$DEPS/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
  export LD_LIBRARY_PATH=$DEPS/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export LIBRARY_PATH=$DEPS/lib${LIBRARY_PATH:+:$LIBRARY_PATH}
  export CMAKE_PREFIX_PATH=$DEPS${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
  command -v pkg-config >/dev/null || export PATH=$PATH:$DEPS/bin
else
  echo "note: no .deps (run scripts/fetch-gpu-deps.sh first where packages exist)" >> "$SUMMARY"
fi
JOBS=$(nproc 2>/dev/null || echo 4)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

# step NAME LOGFILE TIMEOUT_S COMMAND...: runs, records "NAME rc=N seconds=S" in summary.txt.
step() {
  local name=$1 log=$2 limit=$3
  shift 3
  local s=$(date +%s)
  echo "== $name: $*" >> "$log"
  timeout --kill-after=10 "$limit" "$@" >> "$log" 2>&1
  local rc=$?
  local e=$(( $(date +%s) - s ))
  [ $rc -eq 124 ] && echo "== $name: TIMED OUT after ${limit}s" >> "$log"
  echo "$name rc=$rc seconds=$e" | tee -a "$SUMMARY"
  return $rc
}

{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown) $(git status --porcelain 2>/dev/null | wc -l) changed files"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
  echo "nvcc: $(nvcc --version 2>&1 | tail -1)"
  echo "meson: $(meson --version 2>&1) ninja: $(ninja --version 2>&1) cores: $JOBS"
} >> "$SUMMARY"

# -- build: the library, the gpu suite and kiln_bench only (examples and other suites are not needed)
BUILD_LOG=$LOG/build.log
: > "$BUILD_LOG"
if [ ! -f "$BUILD/build.ninja" ]; then
  step configure "$BUILD_LOG" 120 meson setup "$BUILD" -Dcuda=enabled -Dgpu_arch="$ARCH" \
    -Dtests=true -Dbench=true -Dexamples=true -Dbuildtype=release \
    -Dpkg_config_path="${PKG_CONFIG_PATH:-}" -Dcmake_prefix_path="$DEPS"
else
  step reconfigure "$BUILD_LOG" 120 meson setup --reconfigure "$BUILD" -Dgpu_arch="$ARCH"
fi
"$ROOT/scripts/cuda-stale.sh" "$BUILD" >> "$BUILD_LOG" 2>&1
step build "$BUILD_LOG" 300 ninja -C "$BUILD" -j "$JOBS" tests/test_gpu bench/kiln_bench examples/train_cifar10
TEST=$BUILD/tests/test_gpu
BENCH=$BUILD/bench/kiln_bench
export KILN_SOURCE_ROOT=$ROOT KILN_BUILD_ROOT=$BUILD

# -- the gpu suite
if [ -x "$TEST" ]; then
  step gpu-tests "$LOG/gpu-tests.log" 150 "$TEST" --duration=true
  grep -E "^\[doctest\] (test cases|assertions|Status)" "$LOG/gpu-tests.log" | sed 's/^/  /' >> "$SUMMARY"
  grep -E ": (ERROR|FATAL ERROR):" "$LOG/gpu-tests.log" | head -20 | sed 's/^/  fail: /' >> "$SUMMARY"
else
  echo "gpu-tests rc=missing-binary" >> "$SUMMARY"
fi

# -- kernel benchmarks
if [ -x "$BENCH" ]; then
  step bench-kernels "$LOG/bench-kernels.log" 60 "$BENCH" --mode kernels --device cuda
  # The multi-tensor kernels next to the per-tensor loop, human-readable, then everything as JSON.
  grep -E "^(adamw|sgd momentum|unscale|norm2) " "$LOG/bench-kernels.log" | sed 's/^/  /' >> "$SUMMARY"
  tail -1 "$LOG/bench-kernels.log" | sed 's/^/  json: /' >> "$SUMMARY"
else
  echo "bench-kernels rc=missing-binary" >> "$SUMMARY"
fi

# -- the reference CNN's training step: kiln and PyTorch + Lightning Fabric on this GPU, same
#    model, step and batches, data already on the device (bench/peers/fabric_cnn.py)
if [ -x "$BENCH" ]; then
  train_all() {
    for p in 32-true bf16-mixed 16-mixed; do
      for b in 128 512; do
        for g in 0 1; do
          "$BENCH" --mode train --device cuda --precision "$p" --batch-size "$b" --steps 30 --warmup 5 \
            --repeats 3 --cuda-graphs $g || true
        done
        # float32 convolutions on TF32 tensor cores, as PyTorch runs them by default
        if [ "$p" = 32-true ]; then
          "$BENCH" --mode train --device cuda --precision "$p" --batch-size "$b" --steps 30 --warmup 5 \
            --repeats 3 --cuda-graphs 1 --tf32 1 || true
        fi
      done
    done
  }
  export -f train_all
  export BENCH
  step train-kiln "$LOG/train.log" 90 bash -c train_all
fi
if command -v python3 >/dev/null; then
  step train-peer "$LOG/train.log" 120 python3 "$ROOT/bench/peers/fabric_cnn.py" --accelerator cuda \
    --precision 32-true bf16-mixed 16-mixed --batch-size 128 512 --steps 30 --warmup 5 --repeats 3
fi
grep -E '^\{"bench"' "$LOG/train.log" | sed 's/^/  /' >> "$SUMMARY"

# -- the recipe end to end: 20 epochs over 50,000 random CIFAR-shaped images with evaluation of
#    10,000 and a checkpoint each epoch (train_cifar10 on the GPU: data on the device, the step a
#    CUDA graph), and the seed's PyTorch + Fabric program on the same files (3 epochs: its time
#    per epoch gives the ratio)
TRAIN=$BUILD/examples/train_cifar10
if [ -x "$TRAIN" ] && command -v python3 >/dev/null; then
  recipe() {
    python3 "$ROOT/bench/peers/make_synthetic_cifar10.py" /tmp/kiln-cifar-synth || return 1
    rm -rf /tmp/kiln-recipe && mkdir -p /tmp/kiln-recipe && cd /tmp/kiln-recipe || return 1
    local s=$EPOCHREALTIME
    "$TRAIN" --data-dir /tmp/kiln-cifar-synth --accelerator gpu --epochs 20 --seed 0 --num-workers 4 \
      --checkpoint /tmp/kiln-recipe/last.safetensors --log-dir /tmp/kiln-recipe/logs || return 1
    echo "{\"recipe\":\"kiln train_cifar10\",\"epochs\":20,\"wall_seconds\":$(awk "BEGIN {print $EPOCHREALTIME - $s}")}"
    s=$EPOCHREALTIME
    PYTHONUNBUFFERED=1 python3 "$ROOT/bench/peers/seed_cifar10.py" --data-dir /tmp/kiln-cifar-synth --epochs 3 \
      --accelerator cuda --num-workers 8 --checkpoint-dir /tmp/kiln-recipe/peer || return 1
    echo "{\"recipe\":\"peer seed_cifar10.py\",\"epochs\":3,\"wall_seconds\":$(awk "BEGIN {print $EPOCHREALTIME - $s}")}"
  }
  export -f recipe
  export TRAIN ROOT
  step recipe "$LOG/train.log" 150 bash -c recipe
  grep -E '^\{"(recipe|program)"|"images_per_s"' "$LOG/train.log" | tail -4 | sed 's/^/  /' >> "$SUMMARY"
fi

# -- memcheck on the same suite (slower: the biggest cases, those that keep the GPU busy with large
#    matmuls on purpose, and the multi-tensor dtype sweeps are excluded to fit the time; the
#    multi-tensor kernels are still covered through the optimizer, unscale and norm cases)
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda*/compute-sanitizer/compute-sanitizer \
      /usr/local/cuda*/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer/compute-sanitizer 2>/dev/null | head -1)
if [ -x "$TEST" ] && [ -n "$SAN" ]; then
  # API errors are not reported: NCCL probes its kernels with cudaFuncGetAttributes at
  # initialisation and gets "no kernel image" for architectures it was not built for (8 such
  # reports per run, none from kiln, whose every CUDA call is checked and throws).
  step memcheck "$LOG/memcheck.log" 110 "$SAN" --tool memcheck --leak-check no --report-api-errors no \
    --error-exitcode 99 --print-limit 20 "$TEST" -tce="*reuses memory*,*queued*,*events order*,*equals the per-tensor kernel*"
  grep -E "ERROR SUMMARY|^\[doctest\] (test cases|Status)" "$LOG/memcheck.log" | sed 's/^/  /' >> "$SUMMARY"
else
  echo "memcheck rc=skipped (no binary or no compute-sanitizer)" >> "$SUMMARY"
fi

echo "total seconds=$(( $(date +%s) - T0 ))" >> "$SUMMARY"
cat "$SUMMARY"
exit 0
