#!/usr/bin/env bash
# Builds the libFuzzer harnesses of fuzz/ (clang, ASan + UBSan, in build-fuzz/) and runs each on
# its committed seed corpus for a while. New inputs are kept in build-fuzz/corpus/<target> (the
# committed seeds stay as they are); a crash, a sanitizer report or an exception other than
# kiln::Error leaves its input in build-fuzz/artifacts/ and fails the run.
#   scripts/fuzz.sh                   # 10 s per target: what CI runs
#   scripts/fuzz.sh 600               # 10 minutes per target
#   scripts/fuzz.sh 60 idx archive    # some targets only
#   build-fuzz/fuzz/fuzz_idx build-fuzz/artifacts/idx-crash-...    # replay one input
# Prints one line per target: executions, coverage (edges, features), corpus size. The library is
# compiled with Debian 12's clang 14 here, so its code keeps to what that compiler accepts (no
# structured bindings captured by lambdas, for one).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --fuzz

secs=${1:-10}
shift || true
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(safetensors checkpoint idx cifar archive flags)
build=${KILN_FUZZ_BUILD_DIR:-build-fuzz}
if [[ ! -f "$build/build.ninja" ]]; then
  CC=clang CXX=clang++ meson setup "$build" -Dfuzz=true -Db_sanitize=address,undefined \
    -Dbuildtype=debugoptimized -Doptimization=1 -Ddefault_library=static -Dcuda=disabled \
    -Ddistributed=disabled -Dtests=false -Dbench=false -Dexamples=false >/dev/null
fi
start=$SECONDS
meson compile -C "$build" "${targets[@]/#/fuzz/fuzz_}"
echo "kiln fuzz: built in $((SECONDS - start)) s"

export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export ASAN_OPTIONS="detect_leaks=1"
mkdir -p "$build/artifacts" "$build/logs"
status=0
for t in "${targets[@]}"; do
  mkdir -p "$build/corpus/$t"
  log="$build/logs/$t.log"
  if "$build/fuzz/fuzz_$t" "$build/corpus/$t" "fuzz/corpus/$t" -max_total_time="$secs" \
      -rss_limit_mb=2048 -timeout=30 -artifact_prefix="$build/artifacts/$t-" -print_final_stats=1 >"$log" 2>&1; then
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n1)
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
    echo "kiln fuzz: $t: $runs runs in ${secs} s; $(echo "$done_line" | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9a-zA-Z]+')"
  else
    status=1
    echo "kiln fuzz: $t FAILED; its input is in $build/artifacts/, the log in $log:"
    grep -E 'ERROR|SUMMARY|runtime error|terminate|what\(\)' "$log" | head -n 8 || tail -n 20 "$log"
  fi
done
exit $status
