#!/usr/bin/env bash
# Installs what kiln needs on a Debian 12 machine, from Debian's packages (and, for the Python
# interop checks, pinned packages from PyPI in a virtualenv under .venv/). Safe to run again: it
# installs only what is missing.
#   scripts/setup.sh            what the build and scripts/run.sh need, and the Fashion-MNIST dataset
#   scripts/setup.sh --tests    also what the test suites need: PyTorch (Debian's python3-torch) and
#                               .venv/interop (Debian's python3 with its packages, plus safetensors and
#                               tensorboard as pinned in tests/fabric/requirements.txt)
#   scripts/setup.sh --peers    also PyTorch, torchvision and OpenBLAS for the CPU peer benchmarks
#   scripts/setup.sh --fuzz     also clang with libFuzzer, for scripts/fuzz.sh
# Flags combine. KILN_REQUIRE_INTEROP=1 makes a failed PyPI install an error instead of a warning.
set -euo pipefail
cd "$(dirname "$0")/.."

tests=false
pkgs=(meson ninja-build pkg-config cmake g++ libeigen3-dev doctest-dev libgloo-dev zlib1g-dev
      dataset-fashion-mnist nlohmann-json3-dev python3)
for arg in "$@"; do
  case "$arg" in
    --tests) tests=true; pkgs+=(python3-torch python3-numpy python3-venv) ;;
    --peers) pkgs+=(python3-torch python3-torchvision libopenblas0-pthread python3-numpy) ;;
    --fuzz) pkgs+=(clang libclang-rt-14-dev) ;;
    *) echo "kiln setup: unknown flag $arg (expected --tests, --peers or --fuzz)" >&2; exit 2 ;;
  esac
done
# The launcher tests: real torchrun (python3-torch, above), mpirun and network namespaces (ip);
# the store's fuzzer: clang with libFuzzer; CI's layout check: clang-format.
if $tests; then pkgs+=(openmpi-bin iproute2 clang libclang-rt-14-dev clang-format); fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "kiln setup: installing ${missing[*]}"
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The interop checks' Python: Debian's interpreter (it has python3-torch and numpy) in a virtualenv
# that also sees Debian's packages, with the pinned PyPI packages on top. Remade when the pins change.
if $tests; then
  venv=.venv/interop
  req=tests/fabric/requirements.txt
  if ! cmp -s "$req" "$venv/requirements.txt" 2>/dev/null; then
    echo "kiln setup: creating $venv (pip install -r $req)"
    rm -rf "$venv"
    mkdir -p .venv
    if /usr/bin/python3 -m venv --system-site-packages "$venv" >.venv/interop.log 2>&1 &&
       "$venv/bin/pip" install --disable-pip-version-check --no-input -r "$req" >>.venv/interop.log 2>&1; then
      cp "$req" "$venv/requirements.txt"
    else
      rm -rf "$venv"
      echo "kiln setup: could not create $venv (PyPI unreachable?); see .venv/interop.log" >&2
      tail -5 .venv/interop.log >&2
      [[ "${KILN_REQUIRE_INTEROP:-}" == "1" ]] && exit 1
      echo "kiln setup: the Python interop test will be skipped" >&2
    fi
  fi
fi
