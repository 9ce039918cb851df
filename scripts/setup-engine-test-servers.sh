#!/usr/bin/env bash
# Installs what the 3D-engine tests need beyond the project's own venv (idempotent; safe to re-run):
#   1. .cache/trellis-standin-venv  : Gradio 4.44.1 + gradio_litmodel3d 0.0.1 (what TRELLIS' setup.sh --demo pins)
#      for the TRELLIS app stand-in (tests/servers/trellis_app.py). Gradio 4.44.1 only serves its API with
#      pydantic 2.10.6 and fastapi < 0.113.
#   2. .cache/trellis2-standin-venv : Gradio 6.0.1 (what TRELLIS.2's setup.sh pins) for the TRELLIS.2 app stand-in
#      (tests/servers/trellis2_app.py); its API lives under /gradio_api and its sliders reject out-of-range values.
#   3. .cache/gltf-validator        : the Khronos glTF-Validator from npm, run through node by alch3mist.mesh.validate,
#                                     and gltfpack (meshopt compression, alch3mist.mesh.compress) beside it.
# Usage: scripts/setup-engine-test-servers.sh   (from anywhere; paths are relative to the repository root)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
STANDIN_VENV="$CACHE/trellis-standin-venv"
STANDIN2_VENV="$CACHE/trellis2-standin-venv"
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
  "gradio_litmodel3d==0.0.1"  # TRELLIS app.py's LitModel3D output component
)
GRADIO6_PINS=(                # TRELLIS.2 setup.sh: gradio==6.0.1; the rest is what it resolved to, pinned
  "gradio==6.0.1"
  "gradio_client==2.0.0"
  "fastapi==0.163.2"
  "starlette==0.52.1"
  "pydantic==2.12.4"
  "huggingface_hub==1.33.0"
  "numpy==2.4.6"
  "pillow==12.3.0"
  "trimesh==4.5.3"
)
GLTF_VALIDATOR_VERSION="2.0.0-dev.3.10"
GLTFPACK_VERSION="1.3.0"

setup_venv() {  # setup_venv VENV GRADIO_VERSION PINS...: a venv with exactly these pins (stamped by their hash)
  local venv="$1" version="$2"
  shift 2
  local stamp="$venv/.installed-$(printf '%s ' "$@" | md5sum | cut -c1-12)"
  if [[ -f "$stamp" ]]; then
    echo "stand-in venv: up to date ($venv)"
    return
  fi
  echo "stand-in venv: installing Gradio $version into $venv"
  [[ -x "$venv/bin/python" ]] || "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
  "$venv/bin/python" -c "import gradio; assert gradio.__version__ == '$version', gradio.__version__"
  rm -f "$venv"/.installed-*
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
setup_venv "$STANDIN_VENV" 4.44.1 "${GRADIO_PINS[@]}"
setup_venv "$STANDIN2_VENV" 6.0.1 "${GRADIO6_PINS[@]}"
echo "engine test servers: ready"
