#!/usr/bin/env bash
# Installs what kiln needs to build, test and benchmark on a Debian 12 machine, from Debian's
# packages only. Safe to run again: it installs only what is missing.
#   scripts/setup.sh            build + test dependencies and the Fashion-MNIST dataset
#   scripts/setup.sh --peers    also PyTorch (Debian) and OpenBLAS for the CPU peer benchmarks
set -euo pipefail

pkgs=(meson ninja-build pkg-config g++ libeigen3-dev doctest-dev libgloo-dev zlib1g-dev
      dataset-fashion-mnist nlohmann-json3-dev python3)
if [[ "${1:-}" == "--peers" ]]; then
  pkgs+=(python3-torch python3-torchvision libopenblas0-pthread python3-numpy)
fi

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
