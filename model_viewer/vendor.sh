#!/usr/bin/env bash
# Re-vendors the <model-viewer> UMD bundle from npm at the version pinned in package.json / package-lock.json.
#   vendor/model-viewer-umd.min.js   the self-contained bundle (model-viewer + three.js + lit), ~1 MB
#   vendor/LICENSE                   model-viewer's licence (Apache-2.0)
#   vendor/THIRD_PARTY_LICENSES      licences of what the bundle includes (three.js, lit, gainmap-js)
#   vendor/VERSION                   version and sha256 of the bundle (the backend's tests check this file)
# Idempotent: running it again at the same pin changes nothing. Needs node + npm and the npm registry.
# Usage: model_viewer/vendor.sh           (to upgrade: edit the version in package.json, `npm install`, re-run)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

npm ci --silent --no-audit --no-fund --ignore-scripts
PKG="node_modules/@google/model-viewer"
VERSION="$(node -p "require('./$PKG/package.json').version")"
PINNED="$(node -p "require('./package.json').dependencies['@google/model-viewer']")"
if [[ "$VERSION" != "$PINNED" ]]; then
  echo "installed @google/model-viewer $VERSION but package.json pins $PINNED" >&2
  exit 1
fi

mkdir -p vendor
cp "$PKG/dist/model-viewer-umd.min.js" vendor/model-viewer-umd.min.js
cp "$PKG/LICENSE" vendor/LICENSE
{
  echo "The model-viewer UMD bundle includes the following packages (versions: what npm installed beside it; the"
  echo "bundle was built by Google from the same major versions). Their licences follow."
  for dep in three lit lit-html lit-element @lit/reactive-element @monogrid/gainmap-js; do
    dir="node_modules/$dep"
    [[ -d "$dir" ]] || continue
    licence_file="$(ls "$dir" | grep -i -m1 -E '^(license|licence|copying)' || true)"
    echo
    echo "==== $dep $(node -p "require('./$dir/package.json').version") ($(node -p "require('./$dir/package.json').license"))"
    if [[ -n "$licence_file" ]]; then cat "$dir/$licence_file"; else echo "(no licence file shipped)"; fi
  done
} > vendor/THIRD_PARTY_LICENSES

SHA="$(sha256sum vendor/model-viewer-umd.min.js | cut -d' ' -f1)"
printf '@google/model-viewer %s\nmodel-viewer-umd.min.js sha256 %s\n' "$VERSION" "$SHA" > vendor/VERSION
echo "vendored @google/model-viewer $VERSION ($(stat -c %s vendor/model-viewer-umd.min.js) bytes, sha256 $SHA)"
