#!/usr/bin/env bash
# Builds kiln with AddressSanitizer and UndefinedBehaviorSanitizer (LeakSanitizer on) in a
# second build folder and runs the unit, gradcheck, integration and distributed suites there; any
# report fails the run. CPU only and -O1, to keep CI's time down (scripts/test.sh runs it under
# CI=true; the figures are in bench/RESULTS.md).
#   scripts/sanitize.sh                  # every suite listed above
#   scripts/sanitize.sh --suite unit     # extra arguments go to `meson test`
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

build=${KILN_ASAN_BUILD_DIR:-build-asan}
opts=(-Db_sanitize=address,undefined -Dbuildtype=debugoptimized -Doptimization=1 -Dcuda=disabled
      -Dtests=true -Dexamples=true -Dbench=false)
if [[ -f "$build/build.ninja" ]]; then
  meson configure "$build" "${opts[@]}" >/dev/null
else
  meson setup "$build" "${opts[@]}" >/dev/null
fi
start=$SECONDS
meson compile -C "$build"
echo "kiln sanitize: built in $((SECONDS - start)) s"

# halt_on_error: a UBSan finding fails the test instead of scrolling by. Children (the
# distributed workers, the programs the integration suite runs) inherit these.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
# LeakSanitizer stops the process's threads the way a debugger does, which some containers forbid:
# there it is switched off, loudly, rather than failing every test.
probe=$("$build/tests/test_gradcheck" --test-case=no-such-case 2>&1 || true)
if grep -q "LeakSanitizer has encountered a fatal error" <<<"$probe"; then
  echo "kiln sanitize: LeakSanitizer cannot run on this machine (ptrace not allowed); leaks are NOT checked"
  export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"
fi
suites=(--suite unit --suite gradcheck --suite integration --suite distributed)
[[ $# -gt 0 ]] && suites=("$@")
start=$SECONDS
status=0
meson test -C "$build" --print-errorlogs --num-processes 1 --timeout-multiplier 4 "${suites[@]}" || status=$?
echo "kiln sanitize: suites ran in $((SECONDS - start)) s, status $status"
exit $status
