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
#   * the offline prompt rewriter (alch3mist.prompting, docs/prompting.md): FreeDict bilingual dictionaries in dictd
#     format into English (and the German/Polish pivots of the small ones), read from /usr/share/dictd, and English
#     WordNet 3.0 from /usr/share/wordnet
#       dict-freedict-{deu,fra,spa,ita,por,nld,pol,swe}-eng  dict-freedict-eng-{spa,ita,por,fra,nld,swe,pol}
#       dict-freedict-{spa,fra,por,nld,ita}-deu  dict-freedict-deu-{spa,fra,por,nld,ita,swe}  dict-freedict-ita-pol
#       wordnet-base
#   * real servers for the cluster tests (tests/servers/postgres.py starts its own cluster with initdb + pg_ctl on a
#     loopback port in a temp dir; redis-server for the Celery broker), never the system services
#       postgresql redis-server
# Usage: scripts/install-system-deps.sh   (as root, or a user with sudo; CI runs it as root)
set -euo pipefail

PACKAGES=(
  libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 libglx-mesa0
  chromium fonts-dejavu-core
  docker-compose
  dict-freedict-deu-eng dict-freedict-fra-eng dict-freedict-spa-eng dict-freedict-ita-eng dict-freedict-por-eng
  dict-freedict-nld-eng dict-freedict-pol-eng dict-freedict-swe-eng
  dict-freedict-eng-spa dict-freedict-eng-ita dict-freedict-eng-por dict-freedict-eng-fra dict-freedict-eng-nld
  dict-freedict-eng-swe dict-freedict-eng-pol
  dict-freedict-spa-deu dict-freedict-fra-deu dict-freedict-por-deu dict-freedict-nld-deu dict-freedict-ita-deu
  dict-freedict-deu-spa dict-freedict-deu-fra dict-freedict-deu-por dict-freedict-deu-nld dict-freedict-deu-ita
  dict-freedict-deu-swe dict-freedict-ita-pol
  wordnet-base
  postgresql redis-server
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
