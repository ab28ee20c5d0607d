#!/usr/bin/env bash
# Meson before 1.4 passes nvcc no dependency flags, so ninja does not know which headers a .cu file
# includes: after a header changes, its CUDA objects would be reused stale (and could disagree with
# the C++ objects on a struct's layout). With such a meson this removes every CUDA object of BUILD
# that is older than the newest header of the source tree, so the next build compiles it again.
# Newer meson tracks the headers itself, and then this does nothing.
#   scripts/cuda-stale.sh BUILD
set -euo pipefail
build=${1:?usage: scripts/cuda-stale.sh BUILD}
root=$(cd "$(dirname "$0")/.." && pwd)
[[ -d $build ]] || exit 0
version=$(meson --version 2>/dev/null || echo 0)
if printf '%s\n1.4.0\n' "$version" | sort -V -C; then  # version <= 1.4.0 sorts first
  [[ $version == 1.4.0 ]] && exit 0
  newest=$(find "$root" \( -path "$root/build*" -o -path "$root/.*" \) -prune -o \
    \( -name '*.h' -o -name '*.cuh' \) -type f -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2-)
  [[ -n $newest ]] || exit 0
  stale=$(find "$build" -name '*.cu.o' ! -newer "$newest" -print -delete | wc -l)
  [[ $stale -eq 0 ]] || echo "cuda-stale: meson $version does not track nvcc's headers; removed $stale CUDA objects older than $newest"
fi
exit 0
