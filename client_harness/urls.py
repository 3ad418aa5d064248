"""URL rules the platform applies to its connection fields, in one place.

The platform wants an https token endpoint and a wss LiveKit URL. Plain http/ws is tolerated only
for loopback hosts (a local stack) or when the user explicitly says `insecure`, because a real
deployment reached over plain text leaks tokens and API keys.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback_host(host: str | None) -> bool:
    """True for localhost names and 127.0.0.0/8 / ::1 addresses."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint_problem(url: str, *, insecure: bool = False) -> str | None:
    """Why `url` is not acceptable as a token endpoint, or None when it is."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"{url!r} is not an http(s) URL; expected e.g. https://your-api.com/livekit/token"
    if parts.scheme == "http" and not (insecure or is_loopback_host(parts.hostname)):
        return (
            f"{url!r} uses plain http; the platform requires https "
            "(http is accepted only for loopback hosts, or with --insecure)"
        )
    return None


def server_url_problem(url: str, *, insecure: bool = False) -> str | None:
    """Why `url` is not acceptable as a LiveKit server URL, or None when it is."""
    parts = urlsplit(url.strip())
    if parts.scheme in ("https", "http") and parts.hostname:
        wanted = "wss" if parts.scheme == "https" else "ws"
        return (
            f"{url!r} is an {parts.scheme} URL; the LiveKit server URL must be a WebSocket URL "
            f"({wanted}://{parts.netloc})"
        )
    if parts.scheme not in ("wss", "ws") or not parts.hostname:
        return f"{url!r} is not a WebSocket URL; expected e.g. wss://your-livekit-server.com"
    if parts.scheme == "ws" and not (insecure or is_loopback_host(parts.hostname)):
        return (
            f"{url!r} uses unencrypted ws://; the platform requires wss:// "
            "(ws is accepted only for loopback hosts, or with --insecure)"
        )
    return None
