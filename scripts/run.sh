#!/usr/bin/env bash
# Sets up a fresh machine (Debian packages), builds kiln and runs the reference training program
# (the CNN of DESIGN.md on Fashion-MNIST, which Debian ships; --dataset cifar10 --data-dir DIR for
# CIFAR-10). Extra arguments go to the program, e.g. scripts/run.sh --epochs 2.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[[ -d /usr/local/cuda/bin ]] && export PATH="$PATH:/usr/local/cuda/bin"
build=${KILN_BUILD_DIR:-build}
if [[ ! -f "$build/build.ninja" ]]; then
  meson setup "$build" -Dnative=true
fi
meson compile -C "$build"
exec "$build/examples/train_cifar10" "$@"
