#!/usr/bin/env bash
# Checks kiln's files with the real Python tools. Creates $KILN_BUILD_ROOT/pyenv (a virtualenv that
# also sees Debian's packages, for python3-torch) and installs tests/fabric/requirements.txt from
# PyPI once. Exits 77 (meson's "skipped") with the reason when that is impossible (no network).
#   tests/fabric/run_interop.sh BUILD/tests/fabric/interop_writer
set -uo pipefail
writer=$1
here=$(cd "$(dirname "$0")" && pwd)
build=${KILN_BUILD_ROOT:-$(dirname "$writer")/../..}
env=$build/pyenv
if [[ ! -x $env/bin/python ]] || ! "$env/bin/python" -c "import safetensors, tensorboard" 2>/dev/null; then
  rm -rf "$env"
  if ! /usr/bin/python3 -m venv --system-site-packages "$env" >"$build/pyenv.log" 2>&1; then
    echo "SKIP: cannot create a virtualenv (install python3-venv; see $build/pyenv.log)"; exit 77
  fi
  if ! timeout 600 "$env/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt" \
       >>"$build/pyenv.log" 2>&1; then
    echo "SKIP: pip could not install safetensors/tensorboard from PyPI (offline?); see $build/pyenv.log"
    rm -rf "$env"; exit 77
  fi
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$writer" "$out" || exit 1
"$env/bin/python" "$here/check_interop.py" "$out"
