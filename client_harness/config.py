"""The platform's connection fields, read once, validated before anything is sent.

Field names and formats are the platform's own (`generate_token_endpoint`, `livekit_url`,
`generate_token_headers` as a JSON string, ...), so a config that passes here can be pasted into the
platform's form unchanged. Sources, later ones winning: a YAML/JSON file, `HARNESS_<FIELD>`
environment variables, command-line flags. Every problem is reported at once, named by its field.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Protocol

import yaml

from client_harness.urls import endpoint_problem, server_url_problem
from kit_settings import SettingsError, parse_flag

ENV_PREFIX = "HARNESS_"
DEFAULT_SANDBOX_BASE_URL = "https://cloud-api.livekit.io"
SANDBOX_PATH = "/api/v2/sandbox/connection-details"
PLATFORM_FIELDS = (
    "generate_token_endpoint",
    "livekit_url",
    "generate_token_headers",
    "sandbox_id",
    "livekit_agent_name",
    "livekit_agent_metadata",
    "token_request_payload",
)
# Keys the platform itself sends; a custom payload that sets them is overridden.
PLATFORM_BODY_KEYS = ("room_name", "participant_name")


class ConfigError(SettingsError):
    """One or more fields are invalid; `problems` holds one `field: reason` line each."""

    def __str__(self) -> str:
        return "invalid configuration:\n  " + "\n  ".join(self.problems)


@dataclass(frozen=True)
class HarnessConfig:
    """The platform's seven connection fields plus the harness's own knobs (after them)."""

    generate_token_endpoint: str = ""
    livekit_url: str = ""
    generate_token_headers: str = ""  # JSON object as a string, exactly as in the platform form
    sandbox_id: str = ""
    livekit_agent_name: str = ""
    livekit_agent_metadata: str = ""
    token_request_payload: str = ""  # JSON object as a string
    # Harness-only settings.
    sandbox_base_url: str = DEFAULT_SANDBOX_BASE_URL
    insecure: bool = False  # allow http/ws to non-loopback hosts
    request_timeout: float = 10.0
    agent_join_timeout: float = 30.0
    # Optional, for diagnosis only (the platform never has these): lets a failed agent join be
    # explained by listing the room's dispatches on the LiveKit server.
    livekit_api_url: str = ""
    livekit_api_key: str = ""
    livekit_api_secret: str = ""

    @property
    def headers(self) -> dict[str, str]:
        """generate_token_headers parsed (validated already)."""
        return _json_object(self.generate_token_headers) or {}

    @property
    def payload(self) -> dict[str, Any]:
        """token_request_payload parsed (validated already)."""
        return _json_object(self.token_request_payload) or {}

    @property
    def sandbox_url(self) -> str:
        return self.sandbox_base_url.rstrip("/") + SANDBOX_PATH

    @property
    def can_list_dispatches(self) -> bool:
        return bool(self.livekit_api_key and self.livekit_api_secret)

    def redacted(self) -> dict[str, Any]:
        """The config for reports: header values and the API secret masked."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.generate_token_headers:
            out["generate_token_headers"] = json.dumps({k: "***" for k in self.headers})
        if self.livekit_api_secret:
            out["livekit_api_secret"] = "***"  # noqa: S105 - a mask
        return out


_FIELD_TYPES = {f.name: f.type for f in fields(HarnessConfig)}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _json_object(text: str) -> dict[str, Any] | None:
    if not text.strip():
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) else None


def _coerce(name: str, value: Any, problems: list[str]) -> Any:
    """A raw value (file, env or flag) as the field's type; JSON-string fields accept mappings."""
    kind = _FIELD_TYPES[name]
    if kind == "bool":
        return _flag(name, value, problems)
    if kind == "float":
        try:
            return float(value)
        except (TypeError, ValueError):
            problems.append(f"{name}: {value!r} is not a number")
            return getattr(HarnessConfig(), name)  # keep one problem per field
    if name in ("generate_token_headers", "token_request_payload") and isinstance(value, Mapping):
        return json.dumps(dict(value))  # YAML convenience: a mapping instead of a JSON string
    if value is None:
        return ""
    return str(value)


def _flag(name: str, value: Any, problems: list[str]) -> bool:
    """A boolean field: a bool, or the words every part of the kit accepts; blank is the default."""
    if isinstance(value, bool):
        return value
    default: bool = getattr(HarnessConfig(), name)
    text = "" if value is None else str(value)
    if not text.strip():
        return default
    flag = parse_flag(text)
    if flag is None:
        problems.append(
            f"{name}: {value!r} is not a boolean (one of 1/0, true/false, yes/no, on/off)"
        )
        return default
    return flag


def _expand_env(name: str, value: Any, env: Mapping[str, str], problems: list[str]) -> Any:
    """`${VAR}` in file values (so API keys need not be written into config files)."""
    if isinstance(value, Mapping):
        return {k: _expand_env(name, v, env, problems) for k, v in value.items()}
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        var = match.group(1)
        if var not in env:
            problems.append(f"{name}: refers to ${{{var}}}, which is not set in the environment")
            return ""
        return env[var]

    return _ENV_REF.sub(sub, value)


def read_file(path: Path, env: Mapping[str, str], problems: list[str]) -> dict[str, Any]:
    """Raw field values from a YAML or JSON file (JSON is YAML)."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        problems.append(f"config file: cannot read {path}: {exc.strerror}")
        return {}
    except yaml.YAMLError as exc:
        problems.append(f"config file: {path} is not valid YAML/JSON: {exc}")
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(f"config file: {path} must hold a mapping of field names to values")
        return {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _FIELD_TYPES:
            problems.append(f"{key}: unknown field in {path} (known: {', '.join(_FIELD_TYPES)})")
            continue
        out[key] = _expand_env(key, value, env, problems)
    return out


def read_env(env: Mapping[str, str]) -> dict[str, Any]:
    """Raw field values from HARNESS_<FIELD NAME IN CAPITALS> variables."""
    return {
        name: env[ENV_PREFIX + name.upper()]
        for name in _FIELD_TYPES
        if ENV_PREFIX + name.upper() in env
    }


def validate(config: HarnessConfig) -> list[str]:
    """Every problem with `config`, each as `field: reason`; empty when it can be used."""
    problems = _address_problems(config)
    for name in ("generate_token_headers", "token_request_payload"):
        problems.extend(_json_field_problems(name, getattr(config, name)))
    for name in ("request_timeout", "agent_join_timeout"):
        if not getattr(config, name) > 0:
            problems.append(f"{name}: must be a positive number of seconds")
    if bool(config.livekit_api_key) != bool(config.livekit_api_secret):
        problems.append("livekit_api_key/livekit_api_secret: set both or neither")
    if config.livekit_api_url:
        parts_problem = endpoint_problem(config.livekit_api_url, insecure=True)
        if parts_problem and server_url_problem(config.livekit_api_url, insecure=True):
            problems.append(f"livekit_api_url: {config.livekit_api_url!r} is not a URL")
    return problems


def _address_problems(config: HarnessConfig) -> list[str]:
    """The token endpoint (or the sandbox's) and the LiveKit URL callers join."""
    problems: list[str] = []
    if config.sandbox_id.strip():
        problem = endpoint_problem(config.sandbox_base_url, insecure=config.insecure)
        if problem:
            problems.append(f"sandbox_base_url: {problem}")
    elif not config.generate_token_endpoint.strip():
        problems.append(
            "generate_token_endpoint: required (the https URL of your token endpoint), "
            "unless sandbox_id is set"
        )
    else:
        problem = endpoint_problem(config.generate_token_endpoint, insecure=config.insecure)
        if problem:
            problems.append(f"generate_token_endpoint: {problem}")

    if not config.livekit_url.strip():
        problems.append("livekit_url: required (your LiveKit server's wss:// URL)")
    else:
        problem = server_url_problem(config.livekit_url, insecure=config.insecure)
        if problem:
            problems.append(f"livekit_url: {problem}")
    return problems


def _json_field_problems(name: str, text: str) -> list[str]:
    """generate_token_headers or token_request_payload: blank, or a JSON object that fits."""
    if not text.strip():
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return [f"{name}: not valid JSON ({exc})"]
    if not isinstance(value, dict):
        return [f"{name}: must be a JSON object, got a {type(value).__name__}"]
    problems: list[str] = []
    if name == "generate_token_headers":
        for key, item in value.items():
            if not isinstance(item, str):
                problems.append(f"{name}: header {key!r} must be a string, got {item!r}")
            elif "\n" in item or "\r" in item:
                problems.append(f"{name}: header {key!r} contains a line break")
    else:
        problems.extend(
            f"{name}: sets {key!r}, which the platform itself sends (remove it)"
            for key in PLATFORM_BODY_KEYS
            if key in value
        )
    return problems


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> HarnessConfig:
    """File, then environment, then `overrides` (flags; None values ignored); validated.

    Raises `ConfigError` listing every problem, before any request is made.
    """
    env = os.environ if env is None else env
    problems: list[str] = []
    raw: dict[str, Any] = {}
    if path is not None:
        raw.update(read_file(path, env, problems))
    raw.update(read_env(env))
    for key, value in (overrides or {}).items():
        if key not in _FIELD_TYPES:
            raise KeyError(f"unknown config field {key!r}")
        if value is not None:
            raw[key] = value
    values = {name: _coerce(name, value, problems) for name, value in raw.items()}
    config = replace(HarnessConfig(), **values)
    problems.extend(validate(config))
    if problems:
        raise ConfigError(problems)
    return config


class TokenEndpointAddress(Protocol):
    """Where a token endpoint answers and the API key it wants (a local stack's `TokenServer`)."""

    @property
    def endpoint(self) -> str: ...
    @property
    def api_key(self) -> str | None: ...


class LiveKitAddress(Protocol):
    """Where a livekit-server answers and a key pair it accepts (a local `LiveKitServer`)."""

    @property
    def url(self) -> str: ...
    @property
    def api_key(self) -> str: ...
    @property
    def api_secret(self) -> str: ...


def stack_config(
    endpoint: TokenEndpointAddress, livekit: LiveKitAddress, **fields: object
) -> HarnessConfig:
    """The platform's connection fields for `endpoint` (its API key as the platform's header),
    and `livekit`'s credentials for the harness's diagnosis; `fields` override (e.g.
    livekit_agent_name="x", agent_join_timeout=3). Tests, benchmarks and the demo build their
    config here, so each calls the stack exactly as the platform would."""
    headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else None
    base: dict[str, object] = {
        "generate_token_endpoint": endpoint.endpoint,
        "livekit_url": livekit.url,
        "generate_token_headers": json.dumps(headers) if headers else "",
        "livekit_api_key": livekit.api_key,
        "livekit_api_secret": livekit.api_secret,
    }
    return load_config(env={}, overrides={**base, **fields})
