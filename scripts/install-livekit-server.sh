#!/usr/bin/env bash
# Provision livekit-server v1.13.5 and print its path on the last line of stdout.
# Order: $LIVEKIT_SERVER_BIN, `livekit-server` on PATH, the cached build, a fresh `go install`.
# Nothing built here is committed: the binary lives in the user's cache directory.
set -euo pipefail

VERSION=v1.13.5
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/coval-livekit-kit"
TARGET="$CACHE_DIR/livekit-server-$VERSION"

log() { echo "install-livekit-server: $*" >&2; }

if [ -n "${LIVEKIT_SERVER_BIN:-}" ]; then
  if [ -x "$LIVEKIT_SERVER_BIN" ]; then echo "$LIVEKIT_SERVER_BIN"; exit 0; fi
  log "LIVEKIT_SERVER_BIN=$LIVEKIT_SERVER_BIN is not an executable file"; exit 1
fi
if command -v livekit-server >/dev/null 2>&1; then
  found=$(command -v livekit-server)
  log "using $found ($("$found" --version 2>/dev/null || echo 'unknown version'); this kit is tested with $VERSION)"
  echo "$found"; exit 0
fi
if [ -x "$TARGET" ]; then echo "$TARGET"; exit 0; fi

GO=$(command -v go || true)
[ -z "$GO" ] && [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go
if [ -n "$GO" ]; then
  log "building livekit-server $VERSION with $("$GO" version) (a few minutes the first time)"
  mkdir -p "$CACHE_DIR"
  gobin=$(mktemp -d "$CACHE_DIR/gobin.XXXXXX")
  trap 'rm -rf "$gobin"' EXIT
  # The module path is still github.com/livekit/livekit-server; the binary it builds is `server`.
  GOBIN="$gobin" "$GO" install "github.com/livekit/livekit-server/cmd/server@$VERSION" >&2
  mv "$gobin/server" "$TARGET"
  log "installed $TARGET"
  echo "$TARGET"; exit 0
fi

cat >&2 <<MSG
install-livekit-server: no livekit-server $VERSION and no Go toolchain to build it. Any one of:
  - Go 1.26+:      go install github.com/livekit/livekit-server/cmd/server@$VERSION  (binary is named 'server')
  - Linux:         curl -sSL https://get.livekit.io | bash
  - macOS:         brew install livekit
  - Docker:        docker compose up livekit   (see docker-compose.yml)
then set LIVEKIT_SERVER_BIN=/path/to/livekit-server, or put it on PATH as livekit-server.
MSG
exit 1
