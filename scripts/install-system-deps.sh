#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages the project needs beyond pip (idempotent; installs only what is missing):
#   * offscreen rendering (alch3mist.mesh.render, VTK from pip): Mesa's EGL + llvmpipe, no X server needed
#       libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 libglx-mesa0
#   * browser tests (tests/model_viewer/, Open WebUI end-to-end): Debian's Chromium, driven by Playwright through
#     executable_path=/usr/bin/chromium (Playwright never downloads a browser), and a font for its text
#       chromium fonts-dejavu-core
#   * node + npm when absent (model_viewer/vendor.sh, the glTF validator)
#       nodejs npm
#   * `docker-compose config` checks compose.yaml in the tests, offline and without a Docker engine
#       docker-compose
# Usage: scripts/install-system-deps.sh   (as root, or a user with sudo; CI runs it as root)
set -euo pipefail

PACKAGES=(
  libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 libglx-mesa0
  chromium fonts-dejavu-core
  docker-compose
)
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "system packages: all present (${PACKAGES[*]})"
  exit 0
fi

SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then SUDO="sudo"; fi
echo "system packages: installing ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
