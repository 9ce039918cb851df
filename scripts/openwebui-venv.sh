#!/usr/bin/env bash
# Build (or reuse) Open WebUI's own virtual environment: torch==2.13.0 first, then open-webui==0.12.4.
#
# Open WebUI pins its own stack (fastapi, transformers, ...), so it never shares the project's .venv; a real
# deployment runs it as a separate server too. Idempotent: a finished venv carries a stamp file and is reused.
# Concurrent callers serialise on a lock. Prints the venv path on success.
#
# Environment:
#   OPENWEBUI_VENV     where to build it (default: <repo>/.cache/openwebui-venv)
#   PYTHON             interpreter for the venv (default: python3.11, else python3)
#   TORCH_INDEX_URL    optional extra index for torch, e.g. https://download.pytorch.org/whl/cpu on CPU-only CI
#                      (torch is installed first so Open WebUI's dependency does not pull the CUDA build there)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OPENWEBUI_VENV:-$ROOT/.cache/openwebui-venv}"
OPENWEBUI_VERSION="0.12.4"
TORCH_VERSION="2.13.0"
STAMP="$VENV/.alch3mist-openwebui-$OPENWEBUI_VERSION"
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"

mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
if ! flock -w 3600 9; then
  echo "openwebui-venv: another install holds $VENV.lock for over an hour" >&2
  exit 1
fi

installed_ok() {
  [ -f "$STAMP" ] && "$VENV/bin/python" - <<PYEOF 2>/dev/null
from importlib.metadata import version
assert version("open-webui") == "$OPENWEBUI_VERSION", version("open-webui")
PYEOF
}

if installed_ok; then
  echo "$VENV"
  exit 0
fi

# A half-built venv (interrupted install, broken pip metadata) is rebuilt from scratch rather than patched.
if [ -d "$VENV" ] && ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  echo "openwebui-venv: $VENV is broken; rebuilding" >&2
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi

PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
"${PIP[@]}" --upgrade pip
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  "${PIP[@]}" "torch==$TORCH_VERSION" --extra-index-url "$TORCH_INDEX_URL"
else
  "${PIP[@]}" "torch==$TORCH_VERSION"
fi
"${PIP[@]}" "open-webui==$OPENWEBUI_VERSION"

"$VENV/bin/python" - <<PYEOF
from importlib.metadata import version
assert version("open-webui") == "$OPENWEBUI_VERSION", version("open-webui")
assert version("torch").startswith("$TORCH_VERSION"), version("torch")
PYEOF
touch "$STAMP"
echo "$VENV"
