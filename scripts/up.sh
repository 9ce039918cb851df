#!/usr/bin/env bash
# `make up`: the Alch3mist backend and a local Open WebUI with the Alch3mist pipe and tool installed, activated and
# configured through Open WebUI's API. Prints the URL to open; Ctrl-C stops both.
#
# The backend runs the tiny preset (random tiny models, preview 3D engine) on a machine without a CUDA GPU, and the
# full preset (FLUX.1-dev, FLUX.1 Kontext, TRELLIS if configured) on a GPU box. Everything it keeps (data, keys,
# Open WebUI's database) lives under .cache/up/, so a second `make up` continues where the first stopped.
#
# Environment (all optional):
#   ALCH3MIST_PRESET        tiny | full            (default: full if `nvidia-smi -L` finds a GPU, else tiny)
#   ALCH3MIST_PORT          backend port           (default 8765)
#   OPENWEBUI_PORT          Open WebUI port        (default 8080)
#   ALCH3MIST_PUBLIC_URL    how browsers reach the backend (default http://127.0.0.1:$ALCH3MIST_PORT: the viewer is
#                           embedded by URL; set it to "" to embed the self-contained viewer page instead)
#   OPENAI_API_BASE_URL, OPENAI_API_KEY   an OpenAI-compatible LLM for Open WebUI (e.g. a local Ollama's /v1)
#   ALCH3MIST_REWRITE_MODEL, ALCH3MIST_CHAT_MODEL   Open WebUI model ids for the pipe's rewrite / ordinary chat
#   OLLAMA_BASE_URL         enables Open WebUI's Ollama connection
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STATE="$ROOT/.cache/up"
mkdir -p "$STATE"
PY="$ROOT/.venv/bin/python"
OWUI_VENV="$(bash "$ROOT/scripts/openwebui-venv.sh" | tail -n 1)"

BACKEND_PORT="${ALCH3MIST_PORT:-8765}"
OWUI_PORT="${OPENWEBUI_PORT:-8080}"
BACKEND_URL="http://127.0.0.1:$BACKEND_PORT"
PUBLIC_URL="${ALCH3MIST_PUBLIC_URL-$BACKEND_URL}"
if [ -z "${ALCH3MIST_PRESET:-}" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then PRESET=full; else PRESET=tiny; fi
else
  PRESET="$ALCH3MIST_PRESET"
fi

secret() {  # a random value kept in $STATE/$1, so restarts keep keys, signed links and sessions valid
  [ -s "$STATE/$1" ] || "$PY" -c "import secrets; print(secrets.token_urlsafe(32))" >"$STATE/$1"
  chmod 600 "$STATE/$1"
  cat "$STATE/$1"
}
API_KEY="$(secret backend-api-key)"
LINK_SECRET="$(secret backend-link-secret)"
WEBUI_SECRET="$(secret openwebui-secret-key)"

for port in "$BACKEND_PORT" "$OWUI_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "up: port $port is already in use (another \`make up\`?). Set ALCH3MIST_PORT / OPENWEBUI_PORT." >&2
    exit 1
  fi
done

PIDS=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "up: stopping…"
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "up: stopped. Logs: $STATE/backend.log, $STATE/openwebui.log"
  exit "${1:-0}"
}
trap 'stop 0' INT TERM
trap 'stop $?' EXIT

# 1. The backend.
echo "up: starting the backend (preset $PRESET) on $BACKEND_URL — log $STATE/backend.log"
ENGINE_ENV=()
if [ "$PRESET" = tiny ] && [ -z "${ALCH3MIST_ENGINE_3D:-}" ]; then ENGINE_ENV=(ALCH3MIST_ENGINE_3D=preview); fi
env ALCH3MIST_API_KEYS="webui:$API_KEY" \
    ALCH3MIST_LINK_SECRET="$LINK_SECRET" \
    ALCH3MIST_DATA_DIR="${ALCH3MIST_DATA_DIR:-$STATE/backend-data}" \
    ALCH3MIST_PUBLIC_URL="$BACKEND_URL" \
    ALCH3MIST_PORT="$BACKEND_PORT" \
    "${ENGINE_ENV[@]}" \
    "$ROOT/.venv/bin/alch3mist" serve --preset "$PRESET" --host 127.0.0.1 --port "$BACKEND_PORT" \
    >>"$STATE/backend.log" 2>&1 &
PIDS+=("$!")

# 2. Open WebUI, in its own venv, single-user (no login) on 127.0.0.1.
echo "up: starting Open WebUI 0.12.4 on http://127.0.0.1:$OWUI_PORT — log $STATE/openwebui.log"
mkdir -p "$STATE/openwebui-data"
(
  cd "$STATE/openwebui-data"
  env DATA_DIR="$STATE/openwebui-data" \
      WEBUI_SECRET_KEY="$WEBUI_SECRET" \
      WEBUI_AUTH=False \
      ENABLE_OLLAMA_API="$([ -n "${OLLAMA_BASE_URL:-}" ] && echo True || echo False)" \
      ENABLE_OPENAI_API="$([ -n "${OPENAI_API_BASE_URL:-}" ] && echo True || echo False)" \
      OFFLINE_MODE=True HF_HUB_OFFLINE=1 ENABLE_VERSION_UPDATE_CHECK=False \
      ANONYMIZED_TELEMETRY=False DO_NOT_TRACK=True SCARF_NO_ANALYTICS=True \
      "$OWUI_VENV/bin/open-webui" serve --host 127.0.0.1 --port "$OWUI_PORT"
) >>"$STATE/openwebui.log" 2>&1 &
PIDS+=("$!")

wait_http() {  # url, what, seconds
  local deadline=$((SECONDS + $3))
  until curl -sf -o /dev/null "$1"; do
    for pid in "${PIDS[@]}"; do
      kill -0 "$pid" 2>/dev/null || { echo "up: $2 exited; see its log in $STATE/" >&2; exit 1; }
    done
    [ "$SECONDS" -lt "$deadline" ] || { echo "up: $2 did not start within $3 s; see $STATE/" >&2; exit 1; }
    sleep 2
  done
}
wait_http "$BACKEND_URL/healthz" "the backend" 1800   # the full preset may download weights first
wait_http "http://127.0.0.1:$OWUI_PORT/health" "Open WebUI" 600

# 3. The pipe and the tool, installed and configured through Open WebUI's API (WEBUI_AUTH=False: admin@localhost).
"$PY" "$ROOT/scripts/openwebui_install.py" --url "http://127.0.0.1:$OWUI_PORT" \
    --email admin@localhost --password admin \
    --backend-url "$BACKEND_URL" --backend-key "$API_KEY" --public-backend-url "$PUBLIC_URL" \
    --rewrite-model "${ALCH3MIST_REWRITE_MODEL:-}" --chat-model "${ALCH3MIST_CHAT_MODEL:-}"

cat <<EOF

  Alch3mist is ready:  http://127.0.0.1:$OWUI_PORT
  Pick the model "Alch3mist" and write, for example:
      Material Alch3mist, a chair made of crocodile leather
  Backend ($PRESET preset): $BACKEND_URL  (API key in $STATE/backend-api-key)
  Press Ctrl-C to stop both.

EOF
wait -n "${PIDS[@]}" || true
echo "up: a server exited; see $STATE/backend.log and $STATE/openwebui.log" >&2
exit 1
