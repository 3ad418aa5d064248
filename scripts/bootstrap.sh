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

# The browser test (tests/e2e/test_browser.py) drives Debian's Chromium. Only that test needs it,
# so a machine that cannot install it still gets the demo: the test then fails and says why.
CHROMIUM=/usr/bin/chromium
if [ ! -x "$CHROMIUM" ]; then
  sudo_=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && sudo_="sudo -n"
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$sudo_" ]; }; then
    log "installing chromium (apt)"
    export DEBIAN_FRONTEND=noninteractive
    $sudo_ apt-get install -y -qq chromium >/dev/null 2>&1 \
      || { $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq chromium >/dev/null; } \
      || log "apt-get could not install chromium"
  fi
fi
if [ -x "$CHROMIUM" ]; then
  log "chromium: $("$CHROMIUM" --version 2>/dev/null | cut -d' ' -f2)"
else
  log "chromium not installed: install Debian's package (sudo apt-get install chromium) for the"
  log "browser test, which fails without it; everything else works"
fi

# The browser test's npm packages (livekit-client, playwright-core, which downloads no browser),
# from tests/browser/package-lock.json; again only for that test. Skipped while node_modules was
# installed from this very lockfile.
browser_dir=tests/browser
browser_stamp="$browser_dir/node_modules/.kit-installed-from"
if command -v npm >/dev/null 2>&1; then
  lock_sum="$({ sha256sum "$browser_dir/package-lock.json" 2>/dev/null \
    || shasum -a 256 "$browser_dir/package-lock.json"; } | cut -d' ' -f1)"
  if [ "$(cat "$browser_stamp" 2>/dev/null)" != "$lock_sum" ]; then
    log "installing the browser test's npm packages (npm ci)"
    if npm ci --prefix "$browser_dir" --no-audit --no-fund --loglevel=error >/dev/null; then
      echo "$lock_sum" >"$browser_stamp"
    else
      log "npm ci failed in $browser_dir: the browser test will fail until it succeeds"
    fi
  fi
else
  log "npm not found: install Node.js 20+ and npm for the browser test, which fails without them"
fi

bash scripts/install-livekit-server.sh >/dev/null
log "livekit-server: $(bash scripts/install-livekit-server.sh 2>/dev/null | tail -n 1)"
