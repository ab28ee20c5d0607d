#!/usr/bin/env bash
# Creates the peers' virtualenv: the current PyTorch, torchvision and Lightning from
# PyPI, as users install them, in an ignored folder of the repository (.venv-peers unless
# KILN_PEER_VENV names another). Safe to run again: an existing venv is kept and only missing
# packages are installed. Prints the interpreter's path last.
#   bench/peers/setup.sh && .venv-peers/bin/python bench/peers/torch_cpu.py --mode train
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${KILN_PEER_VENV:-.venv-peers}
# Pinned so that figures name what they ran against; bump together with bench/RESULTS.md.
pkgs=(torch==2.15.0 torchvision==0.29.2 lightning==2.6.6 numpy pillow)
python=${PYTHON:-python3}
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
fi
if ! "$venv/bin/python" -c "import torch, torchvision, lightning" 2>/dev/null; then
  # PyPI's Linux wheels of torch carry the CUDA libraries too (a few GB); the CPU runs use them
  # as they are, like any user who runs `pip install torch`.
  "$venv/bin/python" -m pip install -q "${pkgs[@]}" >&2
fi
echo "$venv/bin/python"
