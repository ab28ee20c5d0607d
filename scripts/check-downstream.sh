#!/usr/bin/env bash
# Installs the kiln build in BUILD_DIR into a temporary folder (a DESTDIR, so the installed tree is
# used away from the prefix it was configured for, as a moved package would be), then:
#   - compiles every installed header on its own with -Wall -Wextra -Wpedantic -Werror,
#   - builds and runs examples/downstream through pkg-config (meson) and through CMake
#     (find_package(kiln CONFIG REQUIRED)), both with those warnings as errors.
# Used by the integration suite.
#   scripts/check-downstream.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(realpath "$1")
src=$(realpath "$2")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
warn=(-Wall -Wextra -Wpedantic -Werror)
cxx=${CXX:-c++}
run_logged() {  # LOG COMMAND...: runs the command, prints its log only when it fails
  local log=$1
  shift
  "$@" >"$log" 2>&1 || { cat "$log"; echo "check-downstream: failed: $*"; exit 1; }
}

# A kiln built with sanitizers (scripts/sanitize.sh) needs consumers built with them too: the
# sanitizer runtime must be linked into the program, ahead of libkiln.
sanitize=$(meson introspect "$build" --buildoptions |
  python3 -c 'import json, sys; print(next((o["value"] for o in json.load(sys.stdin) if o["name"] == "b_sanitize"), "none"))')
meson_sanitize=() cmake_sanitize=()
if [[ "$sanitize" != "none" ]]; then
  meson_sanitize=(-Db_sanitize="$sanitize")
  cmake_sanitize=(-DCMAKE_EXE_LINKER_FLAGS="-fsanitize=$sanitize")
  warn+=(-fsanitize="$sanitize")
fi

run_logged "$tmp/install.log" meson install -C "$build" --no-rebuild --destdir "$tmp/root"
pc=$(find "$tmp/root" -name kiln.pc | head -n1)
config=$(find "$tmp/root" -name kilnConfig.cmake | head -n1)
[[ -n "$pc" ]] || { echo "check-downstream: kiln.pc was not installed"; exit 1; }
[[ -n "$config" ]] || { echo "check-downstream: kilnConfig.cmake was not installed"; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc")
unset PKG_CONFIG_SYSROOT_DIR
prefix=$(realpath -m "$(pkg-config --variable=prefix kiln)")
[[ "$prefix" == "$tmp/root/"* ]] || { echo "check-downstream: kiln.pc is not relocatable (prefix $prefix)"; exit 1; }
libdir=$(realpath "$(pkg-config --variable=libdir kiln)")
includedir=$(realpath "$(pkg-config --variable=includedir kiln)")

# Internal headers stay in the source tree.
for internal in core/dispatch.h kernels/backend.h kernels/cuda; do
  [[ ! -e "$includedir/kiln/$internal" ]] || { echo "check-downstream: internal $internal was installed"; exit 1; }
done

# Every installed header compiles on its own, clean under the warnings a strict user turns on.
read -r -a cflags <<<"$(pkg-config --cflags kiln)"
(cd "$includedir" && find kiln -name '*.h' | sort) >"$tmp/headers"
check_header() {
  printf '#include <%s>\nint main() { return 0; }\n' "$1" |
    "$cxx" -std=c++20 -fsyntax-only "${warn[@]}" "${cflags[@]}" -x c++ - 2>&1 | sed "s|^|$1: |"
  return "${PIPESTATUS[1]}"
}
failed=0
while read -r h; do
  out=$(check_header "$h") || { echo "$out"; failed=1; }
done <"$tmp/headers"
((failed == 0)) || { echo "check-downstream: installed headers do not compile on their own"; exit 1; }
echo "check-downstream: $(wc -l <"$tmp/headers") installed headers compile on their own with ${warn[*]}"

# pkg-config consumer (meson, warning_level=3 is -Wall -Wextra -Wpedantic).
run_logged "$tmp/meson-setup.log" meson setup "$tmp/meson-build" "$src/examples/downstream" \
  -Dwarning_level=3 -Dwerror=true "${meson_sanitize[@]}"
run_logged "$tmp/meson-compile.log" meson compile -C "$tmp/meson-build"
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$tmp/meson-build/downstream"
echo "check-downstream: built through pkg-config and ran"

# CMake consumer.
run_logged "$tmp/cmake-configure.log" cmake -S "$src/examples/downstream" -B "$tmp/cmake-build" -G Ninja \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_CXX_FLAGS="${warn[*]}" "${cmake_sanitize[@]}"
grep -q "kiln_DIR:PATH=$(dirname "$config")" "$tmp/cmake-build/CMakeCache.txt" ||
  { echo "check-downstream: CMake found another kiln than the one just installed"; exit 1; }
run_logged "$tmp/cmake-build.log" cmake --build "$tmp/cmake-build"
"$tmp/cmake-build/downstream"
echo "check-downstream: built through find_package(kiln) and ran"
