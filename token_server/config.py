"""Settings for the token endpoint, read once at start-up and passed down.

Every problem is collected and reported together, one line each, so a deployer fixes the whole
`.env` in one go instead of one restart per mistake.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlparse


class DispatchMode(enum.StrEnum):
    API = "api"  # the endpoint calls AgentDispatchService.CreateDispatch before answering
    TOKEN = "token"  # noqa: S105 - the dispatch rides in the token's RoomConfiguration
    NONE = "none"  # the customer dispatches their agent some other way


class ConfigError(Exception):
    """Raised with every problem found; `problems` holds one human line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Settings:
    livekit_url: str
    livekit_public_url: str
    api_key: str
    api_secret: str = field(repr=False)
    agent_name: str = ""
    agent_metadata: str = ""
    allowed_agent_names: frozenset[str] = frozenset()
    dispatch_mode: DispatchMode = DispatchMode.API
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    allow_no_auth: bool = False
    token_ttl_seconds: int = 15 * 60
    dispatch_timeout_seconds: float = 5.0
    # Following each dispatch until a worker takes its job (livekit-server offers a job once):
    dispatch_retry: bool = True
    dispatch_retry_deadline_seconds: float = 120.0
    dispatch_retry_interval_seconds: float = 0.5
    dispatch_retry_rate: float = 50.0  # re-dispatches per second, at most, across all rooms
    dispatch_max_followed: int = 10_000
    dispatch_strict: bool = False
    dispatch_strict_timeout_seconds: float = 10.0
    path: str = "/livekit/token"
    host: str = "127.0.0.1"
    port: int = 8888
    workers: int = 1
    log_level: str = "info"

    @property
    def auth_required(self) -> bool:
        return bool(self.api_keys)

    def agent_allowed(self, name: str) -> bool:
        return name == self.agent_name or name in self.allowed_agent_names


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _http_api_url(url: str) -> str:
    """livekit-api accepts ws(s):// and http(s):// alike; normalise for readiness probes."""
    return url.replace("wss://", "https://", 1).replace("ws://", "http://", 1)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from an environment mapping (os.environ by default)."""
    env = os.environ if env is None else env
    problems: list[str] = []

    def get(name: str, default: str = "") -> str:
        return env.get(name, default).strip()

    def number(name: str, default: str, kind: type[int] | type[float], low: float, high: float):
        raw = get(name, default)
        try:
            value = kind(raw)
        except ValueError:
            problems.append(f"{name}={raw!r} is not a {kind.__name__}")
            return kind(default)
        if not low <= value <= high:
            problems.append(f"{name}={raw} is out of range ({low:g}..{high:g})")
            return kind(default)
        return value

    def flag(name: str, default: bool = False) -> bool:
        raw = get(name).lower()
        if not raw:
            return default
        if raw in _TRUE:
            return True
        if raw not in _FALSE:
            problems.append(f"{name}={raw!r} must be one of 1/0, true/false, yes/no")
        return False

    url = get("LIVEKIT_URL")
    if not url:
        problems.append("LIVEKIT_URL is not set (the LiveKit server URL, e.g. ws://127.0.0.1:7880)")
    elif urlparse(url).scheme not in {"ws", "wss", "http", "https"} or not urlparse(url).netloc:
        problems.append(f"LIVEKIT_URL={url!r} must be a ws://, wss://, http:// or https:// URL")
    public_url = get("LIVEKIT_PUBLIC_URL") or url
    if public_url and public_url != url:
        parsed = urlparse(public_url)
        if parsed.scheme not in {"ws", "wss"} or not parsed.netloc:
            problems.append(
                f"LIVEKIT_PUBLIC_URL={public_url!r} must be a ws:// or wss:// URL "
                "(it is the serverUrl callers connect to)"
            )
    api_key = get("LIVEKIT_API_KEY")
    api_secret = get("LIVEKIT_API_SECRET")
    if not api_key:
        problems.append("LIVEKIT_API_KEY is not set")
    if not api_secret:
        problems.append("LIVEKIT_API_SECRET is not set")

    mode_raw = get("DISPATCH_MODE", "api").lower()
    try:
        mode = DispatchMode(mode_raw)
    except ValueError:
        problems.append(f"DISPATCH_MODE={mode_raw!r} must be one of api, token, none")
        mode = DispatchMode.API
    agent_name = get("AGENT_NAME")
    if mode is not DispatchMode.NONE and not agent_name:
        problems.append(
            f"AGENT_NAME is not set but DISPATCH_MODE={mode.value} dispatches an agent by name "
            "(set AGENT_NAME, or DISPATCH_MODE=none to dispatch yourself)"
        )
    allowed = frozenset(n.strip() for n in get("ALLOWED_AGENT_NAMES").split(",") if n.strip())

    api_keys = tuple(k.strip() for k in get("TOKEN_SERVER_API_KEYS").split(",") if k.strip())
    allow_no_auth = flag("TOKEN_SERVER_ALLOW_NO_AUTH")
    if not api_keys and not allow_no_auth:
        problems.append(
            "TOKEN_SERVER_API_KEYS is empty: anyone could mint tokens. Set it, or set "
            "TOKEN_SERVER_ALLOW_NO_AUTH=1 for a local/dev run"
        )

    path = get("TOKEN_SERVER_PATH", "/livekit/token")
    if not path.startswith("/"):
        problems.append(f"TOKEN_SERVER_PATH={path!r} must start with /")
    elif path in {"/healthz", "/readyz"}:
        problems.append(f"TOKEN_SERVER_PATH={path!r} clashes with a health route")

    retry = flag("DISPATCH_RETRY", default=True)
    strict = flag("DISPATCH_STRICT")
    if strict and mode is not DispatchMode.API:
        problems.append(
            f"DISPATCH_STRICT=1 needs DISPATCH_MODE=api (with {mode.value} the endpoint cannot "
            "see whether a worker took the job)"
        )
    if strict and not retry:
        problems.append("DISPATCH_STRICT=1 needs DISPATCH_RETRY=1 (strict mode waits on it)")

    log_level = get("TOKEN_SERVER_LOG_LEVEL", "info").lower()
    if log_level not in {"debug", "info", "warning", "error"}:
        problems.append(
            f"TOKEN_SERVER_LOG_LEVEL={log_level!r} must be debug, info, warning or error"
        )

    settings = Settings(
        livekit_url=url,
        livekit_public_url=public_url,
        api_key=api_key,
        api_secret=api_secret,
        agent_name=agent_name,
        agent_metadata=env.get("AGENT_METADATA", ""),
        allowed_agent_names=allowed,
        dispatch_mode=mode,
        api_keys=api_keys,
        allow_no_auth=allow_no_auth,
        token_ttl_seconds=number("TOKEN_TTL_SECONDS", "900", int, 60, 24 * 3600),
        dispatch_timeout_seconds=number("DISPATCH_TIMEOUT_SECONDS", "5", float, 0.1, 60),
        dispatch_retry=retry,
        dispatch_retry_deadline_seconds=number(
            "DISPATCH_RETRY_DEADLINE_SECONDS", "120", float, 1, 3600
        ),
        dispatch_retry_interval_seconds=number(
            "DISPATCH_RETRY_INTERVAL_SECONDS", "0.5", float, 0.25, 60
        ),
        dispatch_retry_rate=number("DISPATCH_RETRY_RATE", "50", float, 1, 10_000),
        dispatch_max_followed=number("DISPATCH_MAX_FOLLOWED", "10000", int, 1, 1_000_000),
        dispatch_strict=strict,
        dispatch_strict_timeout_seconds=number(
            "DISPATCH_STRICT_TIMEOUT_SECONDS", "10", float, 0.5, 300
        ),
        path=path,
        host=get("TOKEN_SERVER_HOST", "127.0.0.1"),
        port=number("TOKEN_SERVER_PORT", "8888", int, 1, 65535),
        workers=number("TOKEN_SERVER_WORKERS", "1", int, 1, 64),
        log_level=log_level,
    )
    if problems:
        raise ConfigError(problems)
    return settings


def api_http_url(settings: Settings) -> str:
    return _http_api_url(settings.livekit_url)
