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

bash scripts/install-livekit-server.sh >/dev/null
log "livekit-server: $(bash scripts/install-livekit-server.sh 2>/dev/null | tail -n 1)"
