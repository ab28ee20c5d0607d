#!/usr/bin/env bash
# Trains the reference CNN on Fashion-MNIST on a GPU machine, once per precision, with the
# recipe of DESIGN.md, and keeps each run's output: the accuracy and speed figures of
# bench/RESULTS.md ("GPU training"). Reuses the build folder of scripts/gpu-check.sh.
#   scripts/gpu-train.sh LOGDIR DATA_DIR [EPOCHS] [PRECISIONS...]
set -uo pipefail
LOG=${1:?usage: scripts/gpu-train.sh LOGDIR DATA_DIR [EPOCHS] [PRECISIONS...]}
DATA=$(realpath "${2:?need the folder holding the Fashion-MNIST IDX files}")
EPOCHS=${3:-3}
shift 3 2>/dev/null || shift $#
PRECISIONS=("$@")
[ ${#PRECISIONS[@]} -eq 0 ] && PRECISIONS=(32-true bf16-mixed 16-mixed)
mkdir -p "$LOG"
LOG=$(cd "$LOG" && pwd)
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${KILN_GPU_BUILD:-$ROOT/build-gpu-check}
DEPS=$ROOT/.deps/usr
export PATH=/usr/local/cuda/bin:$PATH
if [ -d "$DEPS" ]; then
  export PKG_CONFIG_PATH=$DEPS/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
  export LD_LIBRARY_PATH=$DEPS/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export LIBRARY_PATH=$DEPS/lib${LIBRARY_PATH:+:$LIBRARY_PATH}
  export CMAKE_PREFIX_PATH=$DEPS${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
fi
if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" -Dcuda=enabled -Dgpu_arch=90 -Dtests=false -Dbench=true -Dexamples=true \
    -Dpkg_config_path="${PKG_CONFIG_PATH:-}" -Dcmake_prefix_path="$DEPS" > "$LOG/train-build.log" 2>&1
else
  meson configure "$BUILD" -Dexamples=true >> "$LOG/train-build.log" 2>&1
fi
"$ROOT/scripts/cuda-stale.sh" "$BUILD"
ninja -C "$BUILD" examples/train_cifar10 >> "$LOG/train-build.log" 2>&1 || { echo "build failed"; tail -30 "$LOG/train-build.log"; exit 1; }
for p in "${PRECISIONS[@]}"; do
  echo "== train_cifar10 --accelerator gpu --precision $p --epochs $EPOCHS" | tee -a "$LOG/train-runs.log"
  timeout 300 "$BUILD/examples/train_cifar10" --dataset fashion-mnist --data-dir "$DATA" \
    --accelerator gpu --precision "$p" --epochs "$EPOCHS" --num-workers 8 --seed 0 \
    --log-dir "/tmp/kiln-train-logs/$p" >> "$LOG/train-runs.log" 2>&1
  echo "rc=$?" | tee -a "$LOG/train-runs.log"
  grep -E "Val Acc|images/s|^\{" "$LOG/train-runs.log" | tail -4
done
# Strategy ddp on the GPU: one process here (a one-GPU machine cannot hold two NCCL ranks), so the
# gradients go through DDP's buckets and the NCCL communicator of backend "auto" end to end.
echo "== train_cifar10 --accelerator gpu --devices 1 --strategy ddp --epochs 1" | tee -a "$LOG/train-runs.log"
timeout 180 "$BUILD/examples/train_cifar10" --dataset fashion-mnist --data-dir "$DATA" \
  --accelerator gpu --devices 1 --strategy ddp --epochs 1 --num-workers 8 --seed 0 \
  --log-dir /tmp/kiln-train-logs/ddp --checkpoint /tmp/kiln-train-logs/ddp/last.safetensors \
  >> "$LOG/train-runs.log" 2>&1
echo "rc=$?" | tee -a "$LOG/train-runs.log"
grep -E "Val Acc|^\{" "$LOG/train-runs.log" | tail -2
