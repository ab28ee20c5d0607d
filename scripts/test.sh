#!/usr/bin/env bash
# Sets up a fresh machine (Debian packages, and the interop checks' Python), builds kiln and runs
# every test suite, then prints the totals on one line: "N passed, N failed[, N skipped]". Exit
# status 0 only if all passed.
#   scripts/test.sh                 # everything
#   scripts/test.sh --suite unit    # extra arguments go to `meson test`
# With CI=true the build treats warnings as errors and compiles the CUDA backend (where nvcc is
# found) for one architecture only, to keep its time down.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tests
[[ -d /usr/local/cuda/bin ]] && export PATH="$PATH:/usr/local/cuda/bin"

build=${KILN_BUILD_DIR:-build}
opts=(-Dtests=true -Dbench=true -Dexamples=true)
if [[ "${CI:-}" == "true" ]]; then opts+=(-Dgpu_arch=90 -Dwerror=true); fi
if [[ -f "$build/build.ninja" ]]; then
  meson configure "$build" "${opts[@]}" >/dev/null
else
  meson setup "$build" "${opts[@]}"
fi
scripts/cuda-stale.sh "$build"
meson compile -C "$build"

status=0
meson test -C "$build" --print-errorlogs --num-processes 1 "$@" || status=$?

# CI also checks the layout of .clang-format, runs the suites under ASan+UBSan and each fuzzer for
# 10 s (scripts of their own, which print their own summaries; a finding fails the run).
if [[ "${CI:-}" == "true" && $# -eq 0 ]]; then
  scripts/format.sh --check || status=1
  scripts/sanitize.sh || status=1
  scripts/fuzz.sh 10 || status=1
fi

# Totals over the doctest cases of every suite that ran (meson counts whole executables).
python3 - "$build/meson-logs/testlog.json" <<'PY' || true
import json, re, sys
passed = failed = skipped = 0
for line in open(sys.argv[1]):
    t = json.loads(line)
    out = t.get("stdout", "") or ""
    m = re.findall(r"test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed\s*\|\s*(\d+) skipped", out)
    if m:
        _, p, f, s = map(int, m[-1])
        passed += p; failed += f; skipped += s
    else:  # a test that is not a doctest executable counts as one case
        r = t.get("result", "")
        if r == "OK": passed += 1
        elif r == "SKIP": skipped += 1
        else: failed += 1
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
PY
exit $status
