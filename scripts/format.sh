#!/usr/bin/env bash
# The C++/CUDA layout of .clang-format (Google's style, 120 columns), with Debian's clang-format.
#   scripts/format.sh --check [FILES...]   lists the files whose layout differs; exit 1 if any
#   scripts/format.sh [FILES...]           rewrites them in place
# Without FILES: every tracked .h, .cpp, .cu and .cuh file.
set -euo pipefail
cd "$(dirname "$0")/.."
check=false
if [[ "${1:-}" == "--check" ]]; then
  check=true
  shift
fi
cf=${CLANG_FORMAT:-clang-format}
command -v "$cf" >/dev/null || { echo "format: $cf not found (apt-get install clang-format)" >&2; exit 2; }
if (($#)); then
  files=("$@")
else
  mapfile -t files < <(git ls-files '*.h' '*.cpp' '*.cu' '*.cuh')
fi
if ! $check; then
  "$cf" -i --style=file "${files[@]}"
  exit 0
fi
bad=0
for f in "${files[@]}"; do
  if ! "$cf" --style=file --dry-run --Werror "$f" >/dev/null 2>&1; then
    echo "$f"
    bad=$((bad + 1))
  fi
done
if ((bad)); then
  echo "format: $bad of ${#files[@]} files differ from .clang-format; scripts/format.sh FILE... rewrites them" >&2
  exit 1
fi
echo "format: ${#files[@]} files match .clang-format"
