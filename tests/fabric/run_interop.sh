#!/usr/bin/env bash
# Checks kiln's files with the real Python tools: safetensors (every dtype, numpy and torch), the
# TensorBoard event reader, and PyTorch loading a kiln checkpoint into the equivalent torch module.
# The Python is $KILN_PYTHON, else .venv/interop/bin/python (made by scripts/setup.sh --tests: Debian's
# python3 with python3-torch, plus the pinned safetensors and tensorboard). Nothing is installed
# here: the test never needs the network. Without that Python it exits 77 (meson's "skipped") and
# says why; with KILN_REQUIRE_INTEROP=1 (CI) a missing tool is a failure instead.
#   tests/fabric/run_interop.sh BUILD/tests/fabric/interop_writer
set -uo pipefail
writer=$1
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=${KILN_PYTHON:-$root/.venv/interop/bin/python}
skip() {
  echo "SKIP: $*"
  [[ "${KILN_REQUIRE_INTEROP:-}" == "1" ]] && { echo "KILN_REQUIRE_INTEROP=1: failing instead"; exit 1; }
  exit 77
}
[[ -x "$py" ]] || skip "no interop Python at $py; scripts/setup.sh --tests creates it (needs PyPI once)"
if ! why=$("$py" -c "import numpy, safetensors, tensorboard, torch" 2>&1); then
  skip "$py lacks a package ($(tail -1 <<<"$why")); rerun scripts/setup.sh --tests"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$writer" "$out" || exit 1
"$py" "$here/check_interop.py" "$out"
