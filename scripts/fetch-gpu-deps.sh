#!/usr/bin/env bash
# Fills .deps/ with what the GPU machine (no network, no apt) lacks to build kiln: the header-only
# libraries (Eigen, doctest, nlohmann_json), zlib's headers, Gloo (headers, library and the shared
# libraries it needs, with a relocatable CMake package), pkgconf, and .pc files that find them
# relative to themselves. Run it here, then carry .deps to the GPU machine with the working tree.
#   scripts/fetch-gpu-deps.sh            # writes ./.deps
set -euo pipefail
cd "$(dirname "$0")/.."
D=.deps/usr
rm -rf .deps
mkdir -p "$D/include" "$D/lib/pkgconfig" "$D/bin"

copy_dir() { [ -d "$1" ] && cp -a "$1" "$2" || echo "fetch-gpu-deps: missing $1" >&2; }
copy_dir /usr/include/eigen3 "$D/include/"
copy_dir /usr/include/doctest "$D/include/"
copy_dir /usr/include/nlohmann "$D/include/"
copy_dir /usr/include/gloo "$D/include/"
cp -a /usr/include/zlib.h /usr/include/zconf.h "$D/include/" 2>/dev/null || true
[ -f /usr/include/x86_64-linux-gnu/zconf.h ] && cp -a /usr/include/x86_64-linux-gnu/zconf.h "$D/include/"

# Gloo: the library, its runtime dependencies, and its CMake package made relocatable.
cp -a /usr/lib/libgloo.so* "$D/lib/" 2>/dev/null || echo "fetch-gpu-deps: no libgloo" >&2
for so in $(ldd /usr/lib/libgloo.so.0 2>/dev/null | awk '/=>/ {print $3}'); do
  case "$(basename "$so")" in
    libc.so*|libm.so*|libstdc++*|libgcc_s*|libpthread*|libdl*|librt*|ld-linux*) ;;
    *) cp -aL "$so" "$D/lib/" ;;
  esac
done
if [ -d /usr/share/cmake/Gloo ]; then
  mkdir -p "$D/share/cmake"
  cp -a /usr/share/cmake/Gloo "$D/share/cmake/"
  sed -i 's#"/usr/lib/#"${_IMPORT_PREFIX}/lib/#g' "$D"/share/cmake/Gloo/GlooTargets-*.cmake
fi

# pkgconf in case the GPU machine has no pkg-config.
if command -v pkgconf >/dev/null; then
  cp -aL "$(command -v pkgconf)" "$D/bin/pkg-config"
  for so in $(ldd "$(command -v pkgconf)" | awk '/libpkgconf/ {print $3}'); do cp -aL "$so" "$D/lib/"; done
fi

pc() {  # name version cflags libs
  cat > "$D/lib/pkgconfig/$1.pc" <<PC
prefix=\${pcfiledir}/../..
includedir=\${prefix}/include
Name: $1
Description: $1 (copied for the offline GPU build)
Version: $2
Cflags: $3
Libs: $4
PC
}
eigen_ver=$(awk '/define EIGEN_(WORLD|MAJOR|MINOR)_VERSION/ {printf "%s.", $3}' \
  "$D/include/eigen3/Eigen/src/Core/util/Macros.h" 2>/dev/null | sed 's/\.$//')
pc eigen3 "${eigen_ver:-3.4.0}" '-I${includedir}/eigen3' ''
pc doctest 2.4.9 '-I${includedir}' ''
pc nlohmann_json 3.11.2 '-I${includedir}' ''
pc zlib 1.2.13 '-I${includedir}' '-l:libz.so.1'
du -sh .deps
echo "fetch-gpu-deps: .deps ready"
