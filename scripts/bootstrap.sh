#!/usr/bin/env bash
# Install everything the kit needs on a fresh clone: uv, the Python environment (locked), and
# livekit-server. Safe to re-run: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "bootstrap: $*" >&2; }

if ! command -v uv >/dev/null 2>&1; then
  for candidate in "$HOME/.local/bin/uv" "$HOME/.cargo/bin/uv"; do
    [ -x "$candidate" ] && export PATH="$(dirname "$candidate"):$PATH" && break
  done
fi
if ! command -v uv >/dev/null 2>&1; then
  log "installing uv from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check uv \
    || python3 -m pip install --quiet --disable-pip-version-check --user uv
  export PATH="$HOME/.local/bin:$PATH"
  hash -r
fi
log "$(uv --version)"

# Every extra: token server, sample agent (offline speech), client harness, cloud plugins.
uv sync --locked --extra agent --extra harness --extra openai --quiet

# redis-server: what several livekit-server nodes (and token-server replicas) share. Debian's
# package, as root or with passwordless sudo; elsewhere, say how to get it.
if ! command -v redis-server >/dev/null 2>&1; then
  sudo_=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && sudo_="sudo -n"
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$sudo_" ]; }; then
    log "installing redis-server (apt)"
    export DEBIAN_FRONTEND=noninteractive
    $sudo_ apt-get install -y -qq redis-server >/dev/null 2>&1 \
      || { $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq redis-server >/dev/null; }
  else
    log "redis-server not found: install it (apt install redis-server / brew install redis);"
    log "the cluster tests and \`demo --nodes 2\` need it"
    exit 1
  fi
fi
log "redis-server: $(redis-server --version | cut -d' ' -f3)"

bash scripts/install-livekit-server.sh >/dev/null
log "livekit-server: $(bash scripts/install-livekit-server.sh 2>/dev/null | tail -n 1)"
