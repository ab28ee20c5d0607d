#!/usr/bin/env bash
# Builds the store framing fuzzer (fuzz/store_framing.cpp) with clang's libFuzzer, ASan and UBSan,
# and runs it for SECONDS (default 20) on a copy of the committed seed corpus. Exit 77 (skipped)
# where clang or libFuzzer (Debian's clang and libclang-rt-*-dev) is missing.
#   fuzz/store_fuzz.sh [SECONDS] [BUILD_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
seconds=${1:-20}
out=${2:-${KILN_FUZZ_BUILD:-$root/build-fuzz}}
cxx=${CXX_FUZZ:-clang++}
if ! command -v "$cxx" >/dev/null; then
  echo "skipped: no $cxx (Debian's clang)"; exit 77
fi
mkdir -p "$out"
if ! echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' |
     "$cxx" -x c++ -fsanitize=fuzzer - -o "$out/probe" 2>/dev/null; then
  echo "skipped: $cxx cannot link libFuzzer (Debian's libclang-rt-*-dev)"; exit 77
fi
bin=$out/store_framing
if [[ ! -x $bin || $bin -ot $here/store_framing.cpp || $bin -ot $root/distributed/store_core.cpp ||
      $bin -ot $root/distributed/store_core.h || $bin -ot $root/distributed/store_protocol.h ]]; then
  "$cxx" -std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined -I"$root" "$here/store_framing.cpp" "$root/distributed/store_core.cpp" \
    -o "$bin"
fi
corpus=$out/store_framing_corpus
mkdir -p "$corpus"
cp -n "$here"/corpus/store_framing/* "$corpus"/ 2>/dev/null || true
# -rss_limit_mb: the store's bounds hold far below it; a leak or an unbounded allocation trips it.
exec "$bin" -max_total_time="$seconds" -max_len=8192 -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 \
  "$corpus"
