#!/usr/bin/env bash
# Installs what the 3D-engine tests need beyond the project's own venv (idempotent; safe to re-run):
#   1. .cache/trellis-standin-venv : Gradio 4.44.1 (the version TRELLIS pins) for the TRELLIS stand-in app
#      (tests/servers/trellis_app.py). Gradio 4.44.1 only serves its API with pydantic 2.10.6 and fastapi < 0.113.
#   2. .cache/gltf-validator       : the Khronos glTF-Validator from npm, run through node by alch3mist.mesh.validate,
#                                    and gltfpack (meshopt compression, alch3mist.mesh.compress) beside it.
# Usage: scripts/setup-engine-test-servers.sh   (from anywhere; paths are relative to the repository root)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
STANDIN_VENV="$CACHE/trellis-standin-venv"
VALIDATOR_DIR="$CACHE/gltf-validator"
PYTHON="${PYTHON:-python3.11}"

GRADIO_PINS=(
  "gradio==4.44.1"
  "pydantic==2.10.6"
  "fastapi==0.112.4"
  "huggingface_hub==0.26.5"   # gradio 4.44.1 imports HfFolder, removed in huggingface_hub 1.x
  "numpy==1.26.4"
  "trimesh==4.5.3"            # the stand-in builds its GLB with trimesh
  "pillow==10.4.0"
)
GLTF_VALIDATOR_VERSION="2.0.0-dev.3.10"
GLTFPACK_VERSION="1.3.0"

setup_standin_venv() {
  local stamp="$STANDIN_VENV/.installed-$(printf '%s ' "${GRADIO_PINS[@]}" | md5sum | cut -c1-12)"
  if [[ -f "$stamp" ]]; then
    echo "trellis stand-in venv: up to date ($STANDIN_VENV)"
    return
  fi
  echo "trellis stand-in venv: installing into $STANDIN_VENV"
  "$PYTHON" -m venv "$STANDIN_VENV"
  "$STANDIN_VENV/bin/pip" install --quiet --disable-pip-version-check "${GRADIO_PINS[@]}"
  "$STANDIN_VENV/bin/python" -c "import gradio; assert gradio.__version__ == '4.44.1', gradio.__version__"
  rm -f "$STANDIN_VENV"/.installed-*
  touch "$stamp"
}

npm_package_at() {  # npm_package_at NAME VERSION: installed at that version in $VALIDATOR_DIR?
  local installed="$VALIDATOR_DIR/node_modules/$1/package.json"
  [[ -f "$installed" ]] && grep -q "\"version\": \"$2\"" "$installed"
}

setup_gltf_validator() {
  if npm_package_at gltf-validator "$GLTF_VALIDATOR_VERSION" && npm_package_at gltfpack "$GLTFPACK_VERSION"; then
    echo "gltf-validator + gltfpack: up to date ($VALIDATOR_DIR)"
    return
  fi
  echo "gltf-validator $GLTF_VALIDATOR_VERSION + gltfpack $GLTFPACK_VERSION: installing into $VALIDATOR_DIR"
  mkdir -p "$VALIDATOR_DIR"
  npm install --silent --no-audit --no-fund --save-exact --prefix "$VALIDATOR_DIR" \
    "gltf-validator@$GLTF_VALIDATOR_VERSION" "gltfpack@$GLTFPACK_VERSION"
}

setup_gltf_validator
setup_standin_venv
echo "engine test servers: ready"
