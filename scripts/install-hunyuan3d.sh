#!/usr/bin/env bash
# Installs the optional hunyuan3d-local engine into a venv (idempotent): requirements-hunyuan3d.txt with --no-deps,
# then torchvision==0.28.0 (the release paired with torch 2.13.0), which hy3dgen's image conditioner imports.
#
# torchvision's PyPI wheels are CUDA builds: with a CUDA torch it is installed normally. With a CPU-only torch its
# compiled ops cannot load (they link libtorch_cuda), and an installed torchvision then breaks every
# `import transformers` in the venv ("operator torchvision::nms does not exist"). So on a CPU torch it goes into a
# side folder, <venv>/hy3dgen-torchvision, that only alch3mist.engines.hunyuan3d_local puts on sys.path (with the
# missing op schemas declared first); transformers never sees it. Only torchvision.transforms is used.
# Usage: scripts/install-hunyuan3d.sh [VENV]   (default: .venv at the repository root)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv}"
PY="$VENV/bin/python"
TORCHVISION_PIN="torchvision==0.28.0"
SIDE_DIR="$VENV/hy3dgen-torchvision"

"$PY" -m pip install -q --no-deps -r "$ROOT/requirements-hunyuan3d.txt"
if "$PY" -c 'import sys, torch; sys.exit(0 if torch.version.cuda else 1)'; then
  "$PY" -m pip install -q --no-deps "$TORCHVISION_PIN"
else
  if ! "$PY" -m pip list --path "$SIDE_DIR" 2>/dev/null | grep -q '^torchvision *0\.28\.0'; then
    rm -rf "$SIDE_DIR"
    "$PY" -m pip install -q --no-deps --target "$SIDE_DIR" "$TORCHVISION_PIN"
  fi
fi
