"""Settings for the token endpoint, read once at start-up and passed down.

Every problem is collected and reported together, one line each, so a deployer fixes the whole
`.env` in one go instead of one restart per mistake.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from redis.asyncio.connection import parse_url as parse_redis_url

from kit_settings import EnvReader, SettingsError


class DispatchMode(enum.StrEnum):
    API = "api"  # the endpoint calls AgentDispatchService.CreateDispatch before answering
    TOKEN = "token"  # noqa: S105 - the dispatch rides in the token's RoomConfiguration
    NONE = "none"  # the customer dispatches their agent some other way


# The kit's one settings error (every problem, one line each in `problems`), by its old name here.
ConfigError = SettingsError


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
    # Browser callers: origins allowed to call the token route (empty: no CORS headers at all).
    cors_origins: tuple[str, ...] = ()
    # Prometheus metrics at METRICS_PATH, behind the API key like the token route.
    metrics: bool = True
    # Shared by every replica: the per-room dispatch lock (empty: the lock is in-process only).
    redis_url: str = field(default="", repr=False)  # may carry a password: never log it as is

    @property
    def redis_url_for_logs(self) -> str:
        """REDIS_URL with its password (if any) replaced by `***`, for logs and answers."""
        return redact_url(self.redis_url)

    @property
    def auth_required(self) -> bool:
        return bool(self.api_keys)

    def agent_allowed(self, name: str) -> bool:
        return name == self.agent_name or name in self.allowed_agent_names


SERVER_URL_SCHEMES = ("ws", "wss", "http", "https")
REDIS_URL_SCHEMES = ("redis", "rediss")  # livekit-api takes either for its API
PUBLIC_URL_SCHEMES = ("ws", "wss")  # what a caller's LiveKit client connects to
METRICS_PATH = "/metrics"
OPENAPI_PATH = "/openapi.json"
HEALTH_PATHS = ("/healthz", "/readyz")
RESERVED_PATHS = (*HEALTH_PATHS, METRICS_PATH, OPENAPI_PATH)
LOG_LEVELS = ("debug", "info", "warning", "error")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from an environment mapping (os.environ by default).

    Raises `ConfigError` naming every problem found, one line each.
    """
    reader = EnvReader(os.environ if env is None else env)
    livekit = _livekit(reader)
    mode = _dispatch_mode(reader)
    settings = Settings(
        **livekit,
        **_agent(reader, mode),
        **_dispatch_follow(reader, mode),
        **_endpoint(reader),
        **_server(reader),
        **_coordination(reader),
    )
    reader.check()
    return settings


def _is_url(text: str, schemes: tuple[str, ...]) -> bool:
    parsed = urlparse(text)
    return parsed.scheme in schemes and bool(parsed.netloc)


def redact_url(url: str) -> str:
    """`url` with the password of its user info (if any) replaced by `***`."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    user = parsed.username or ""
    host = parsed.netloc.rpartition("@")[2]
    return parsed._replace(netloc=f"{user}:***@{host}").geturl()


def _livekit(env: EnvReader) -> dict[str, Any]:
    """Where the LiveKit server is, for this process and for callers, and its key pair."""
    url = env.text("LIVEKIT_URL")
    if not url:
        env.problem("LIVEKIT_URL is not set (the LiveKit server URL, e.g. ws://127.0.0.1:7880)")
    elif not _is_url(url, SERVER_URL_SCHEMES):
        env.problem(f"LIVEKIT_URL={url!r} must be a ws://, wss://, http:// or https:// URL")
    public_url = env.text("LIVEKIT_PUBLIC_URL", url)
    if public_url != url and not _is_url(public_url, PUBLIC_URL_SCHEMES):
        env.problem(
            f"LIVEKIT_PUBLIC_URL={public_url!r} must be a ws:// or wss:// URL "
            "(it is the serverUrl callers connect to)"
        )
    api_key = env.text("LIVEKIT_API_KEY")
    api_secret = env.text("LIVEKIT_API_SECRET")
    if not api_key:
        env.problem("LIVEKIT_API_KEY is not set")
    if not api_secret:
        env.problem("LIVEKIT_API_SECRET is not set")
    return {
        "livekit_url": url,
        "livekit_public_url": public_url,
        "api_key": api_key,
        "api_secret": api_secret,
    }


def _dispatch_mode(env: EnvReader) -> DispatchMode:
    modes = tuple(mode.value for mode in DispatchMode)
    return DispatchMode(env.choice("DISPATCH_MODE", DispatchMode.API.value, modes))


def _agent(env: EnvReader, mode: DispatchMode) -> dict[str, Any]:
    """Which agent a token dispatches, and how long a dispatch call may take."""
    agent_name = env.text("AGENT_NAME")
    if mode is not DispatchMode.NONE and not agent_name:
        env.problem(
            f"AGENT_NAME is not set but DISPATCH_MODE={mode.value} dispatches an agent by name "
            "(set AGENT_NAME, or DISPATCH_MODE=none to dispatch yourself)"
        )
    return {
        "dispatch_mode": mode,
        "agent_name": agent_name,
        "agent_metadata": env.env.get("AGENT_METADATA", ""),  # passed on verbatim
        "allowed_agent_names": frozenset(env.names("ALLOWED_AGENT_NAMES")),
        "dispatch_timeout_seconds": env.number("DISPATCH_TIMEOUT_SECONDS", 5.0, 0.1, 60),
    }


def _dispatch_follow(env: EnvReader, mode: DispatchMode) -> dict[str, Any]:
    """Following each dispatch until a worker takes its job, and strict mode waiting on it."""
    retry = env.flag("DISPATCH_RETRY", default=True)
    strict = env.flag("DISPATCH_STRICT")
    if strict and mode is not DispatchMode.API:
        env.problem(
            f"DISPATCH_STRICT=1 needs DISPATCH_MODE=api (with {mode.value} the endpoint cannot "
            "see whether a worker took the job)"
        )
    if strict and not retry:
        env.problem("DISPATCH_STRICT=1 needs DISPATCH_RETRY=1 (strict mode waits on it)")
    return {
        "dispatch_retry": retry,
        "dispatch_retry_deadline_seconds": env.number(
            "DISPATCH_RETRY_DEADLINE_SECONDS", 120.0, 1, 3600
        ),
        "dispatch_retry_interval_seconds": env.number(
            "DISPATCH_RETRY_INTERVAL_SECONDS", 0.5, 0.25, 60
        ),
        "dispatch_retry_rate": env.number("DISPATCH_RETRY_RATE", 50.0, 1, 10_000),
        "dispatch_max_followed": env.number("DISPATCH_MAX_FOLLOWED", 10_000, 1, 1_000_000),
        "dispatch_strict": strict,
        "dispatch_strict_timeout_seconds": env.number(
            "DISPATCH_STRICT_TIMEOUT_SECONDS", 10.0, 0.5, 300
        ),
    }


def _endpoint(env: EnvReader) -> dict[str, Any]:
    """Who may call the endpoint, where it answers, and how long its tokens live."""
    api_keys = env.names("TOKEN_SERVER_API_KEYS")
    allow_no_auth = env.flag("TOKEN_SERVER_ALLOW_NO_AUTH")
    if not api_keys and not allow_no_auth:
        env.problem(
            "TOKEN_SERVER_API_KEYS is empty: anyone could mint tokens. Set it, or set "
            "TOKEN_SERVER_ALLOW_NO_AUTH=1 for a local/dev run"
        )
    path = env.text("TOKEN_SERVER_PATH", "/livekit/token")
    if not path.startswith("/"):
        env.problem(f"TOKEN_SERVER_PATH={path!r} must start with /")
    elif path in RESERVED_PATHS:
        env.problem(f"TOKEN_SERVER_PATH={path!r} clashes with the route already at {path}")
    return {
        "api_keys": api_keys,
        "allow_no_auth": allow_no_auth,
        "path": path,
        "token_ttl_seconds": env.number("TOKEN_TTL_SECONDS", 900, 60, 24 * 3600),
        "cors_origins": _cors_origins(env),
        "metrics": env.flag("TOKEN_SERVER_METRICS", default=True),
    }


def _cors_origins(env: EnvReader) -> tuple[str, ...]:
    """TOKEN_SERVER_CORS_ORIGINS: `*`, or origins as a browser sends them (scheme://host[:port],
    no path): an origin written any other way would never match, and the browser would refuse."""
    origins = env.names("TOKEN_SERVER_CORS_ORIGINS")
    if "*" in origins and len(origins) > 1:
        env.problem("TOKEN_SERVER_CORS_ORIGINS: `*` allows every origin; list no others beside it")
    for origin in origins:
        if origin == "*":
            continue
        parsed = urlparse(origin)
        try:
            parsed.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            parsed = parsed._replace(netloc="")
        if (
            parsed.scheme not in ("http", "https")
            or not parsed.hostname
            or parsed.path
            or parsed.query
            or parsed.fragment
            or "@" in parsed.netloc
        ):
            env.problem(
                f"TOKEN_SERVER_CORS_ORIGINS: {origin!r} is not an origin; write it as the browser "
                "sends it, scheme://host[:port] with no path, e.g. https://app.example.com"
            )
        elif origin != origin.lower().rstrip("/"):
            env.problem(
                f"TOKEN_SERVER_CORS_ORIGINS: {origin!r} must be lower-case (browsers send "
                f"{origin.lower()!r})"
            )
    return origins


def _server(env: EnvReader) -> dict[str, Any]:
    """The HTTP server's address, process count and log level."""
    return {
        "host": env.text("TOKEN_SERVER_HOST", "127.0.0.1"),
        "port": env.number("TOKEN_SERVER_PORT", 8888, 1, 65535),
        "workers": env.number("TOKEN_SERVER_WORKERS", 1, 1, 64),
        "log_level": env.choice("TOKEN_SERVER_LOG_LEVEL", "info", LOG_LEVELS),
    }


def _coordination(env: EnvReader) -> dict[str, Any]:
    """The Redis that several replicas share to dispatch each room once (optional)."""
    url = env.text("REDIS_URL")
    if url:
        problem = _redis_url_problem(url)
        if problem:
            env.problem(f"REDIS_URL={redact_url(url)!r} {problem}")
    return {"redis_url": url}


def _redis_url_problem(url: str) -> str:
    """What is wrong with a REDIS_URL, or "" (checked here so a typo stops the start, not the
    first token request)."""
    parsed = urlparse(url)
    if parsed.scheme not in REDIS_URL_SCHEMES or not parsed.netloc:
        return "must be a redis:// or rediss:// URL, e.g. redis://redis:6379/0"
    try:
        port = parsed.port
    except ValueError:
        return "has an invalid port"
    if not parsed.hostname or port == 0:
        return "has no host (or port 0)"
    db = parsed.path.strip("/")
    if db and not db.isdigit():
        return f"path {parsed.path!r} must be a database number, e.g. /0"
    try:
        parse_redis_url(url)  # the client's own reading: its query options (?ssl_cert_reqs=...)
    except ValueError as exc:
        return str(exc)
    return ""
