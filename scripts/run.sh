#!/usr/bin/env bash
# Sets up a fresh machine (Debian packages), builds kiln and runs the reference training program
# (the reference CNN on Fashion-MNIST, which Debian ships; --dataset cifar10 --data-dir DIR for
# CIFAR-10). Extra arguments go to the program, e.g. scripts/run.sh --epochs 2.
# It builds only the library and the program, in build-run/ (KILN_BUILD_DIR), for this machine's
# CPU; the CUDA backend only where a GPU answers nvidia-smi, and then for that GPU's architecture.
# scripts/test.sh makes the full build (every suite, bench, tools).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[[ -d /usr/local/cuda/bin ]] && export PATH="$PATH:/usr/local/cuda/bin"
build=${KILN_BUILD_DIR:-build-run}

opts=(-Dnative=true -Dtests=false -Dbench=false -Dexamples=true -Dcuda=disabled)
if nvidia-smi >/dev/null 2>&1; then
  # Compute capability "9.0" -> SM 90; one entry per distinct GPU model.
  archs=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | tr -d ' .' |
          grep -E '^[0-9]+$' | sort -u | paste -sd';' || true)
  if ! command -v nvcc >/dev/null; then
    echo "kiln run: a GPU is present but nvcc is not; building for the CPU only (install the CUDA Toolkit)"
  elif [[ -z "$archs" ]]; then
    echo "kiln run: nvidia-smi did not report the GPU's compute capability; building for SM 80 and 90"
    opts[-1]=-Dcuda=enabled
  else
    echo "kiln run: GPU found; building the CUDA backend for SM $archs"
    opts[-1]=-Dcuda=enabled
    opts+=(-Dgpu_arch="$archs")
  fi
fi
if [[ -f "$build/build.ninja" ]]; then
  meson configure "$build" "${opts[@]}" >/dev/null
else
  mkdir -p "$build"
  meson setup "$build" "${opts[@]}" >"$build/setup.log" 2>&1 || { cat "$build/setup.log"; exit 1; }
  echo "kiln run: configured $build ($(grep -E 'CUDA backend|distributed' "$build/setup.log" | tr -s ' ' | paste -sd','))"
fi
scripts/cuda-stale.sh "$build"
meson compile -C "$build" examples/train_cifar10
exec "$build/examples/train_cifar10" "$@"
