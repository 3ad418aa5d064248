"""Which livekit-server (the version the kit is tested with) and redis-server the stack runs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from local_stack.errors import StackError

LIVEKIT_SERVER_VERSION = "v1.13.5"
REPO_ROOT = Path(__file__).resolve().parent.parent
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install-livekit-server.sh"


def _named_or_on_path(variable: str, command: str) -> Path | None:
    """The executable `$variable` names (an error if it is not one), else `command` on PATH."""
    explicit = os.environ.get(variable)
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise StackError(f"{variable}={explicit} is not an executable file")
        return path
    on_path = shutil.which(command)
    return Path(on_path) if on_path else None


def cached_livekit_server_path() -> Path:
    """Where scripts/install-livekit-server.sh leaves the binary it builds."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "coval-livekit-kit" / f"livekit-server-{LIVEKIT_SERVER_VERSION}"


def find_livekit_server() -> Path:
    """$LIVEKIT_SERVER_BIN, else `livekit-server` on PATH, else the provisioned cache path."""
    found = _named_or_on_path("LIVEKIT_SERVER_BIN", "livekit-server")
    if found:
        return found
    cached = cached_livekit_server_path()
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached
    raise StackError(
        f"livekit-server {LIVEKIT_SERVER_VERSION} not found: run `bash {INSTALL_SCRIPT}` "
        "(builds it with Go), or set LIVEKIT_SERVER_BIN to an existing binary"
    )


def find_redis_server() -> Path:
    """$REDIS_SERVER_BIN, else `redis-server` on PATH (scripts/bootstrap.sh installs Debian's)."""
    found = _named_or_on_path("REDIS_SERVER_BIN", "redis-server")
    if found:
        return found
    raise StackError(
        "redis-server not found: run `bash scripts/bootstrap.sh` (installs Debian's "
        "redis-server with apt), `brew install redis`, or set REDIS_SERVER_BIN"
    )
