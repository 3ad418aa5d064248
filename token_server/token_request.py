"""Parse and validate a token request body from any caller this kit serves.

Two shapes arrive at the same route: the simulation platform's (`room_name`, `participant_name`,
plus its custom payload merged in at the top level) and LiveKit's standard token-endpoint shape
used by the client SDKs (`participant_identity`, `room_config.agents`, ...), in snake_case or
camelCase. Every key this module does not know is a custom field and travels to the agent.
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from dataclasses import dataclass, field
from typing import Any

from token_server.errors import ApiError, bad_request

MAX_BODY_BYTES = 64 * 1024
MAX_ROOM_NAME = 256
MAX_PARTICIPANT_NAME = 128
MAX_METADATA = 16 * 1024
DEFAULT_PARTICIPANT_NAME = "user"

# canonical name -> accepted spellings
ALIASES: dict[str, tuple[str, ...]] = {
    "room_name": ("room_name", "roomName"),
    "participant_name": ("participant_name", "participantName"),
    "participant_identity": ("participant_identity", "participantIdentity"),
    "participant_metadata": ("participant_metadata", "participantMetadata"),
    "participant_attributes": ("participant_attributes", "participantAttributes"),
    "room_config": ("room_config", "roomConfig"),
}
KNOWN_KEYS = frozenset(k for spellings in ALIASES.values() for k in spellings)


@dataclass(frozen=True)
class AgentRequest:
    """`room_config.agents[0]` of LiveKit's standard request: which agent, with what metadata."""

    agent_name: str
    metadata: str | None


@dataclass(frozen=True)
class TokenRequest:
    room_name: str
    participant_name: str
    participant_identity: str | None
    participant_metadata: str | None
    participant_attributes: dict[str, str]
    agent: AgentRequest | None
    custom: dict[str, Any] = field(default_factory=dict)


def parse_body(raw: bytes) -> dict[str, Any]:
    """Bytes to a JSON object, or the error naming what was wrong. An empty body means `{}`."""
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"request body is over {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request("invalid_json", f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise bad_request("invalid_json", "request body is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer past Python's digit limit
        raise bad_request("invalid_json", f"request body is not usable JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request(
            "invalid_body", f"request body must be a JSON object, got {type(body).__name__}"
        )
    return body


def _pick(body: dict[str, Any], canonical: str) -> Any:
    """The value under any accepted spelling; two spellings that disagree are an error."""
    present = [(k, body[k]) for k in ALIASES[canonical] if k in body]
    if len(present) > 1 and present[0][1] != present[1][1]:
        raise bad_request(
            "conflicting_fields", f"{present[0][0]} and {present[1][0]} disagree; send one of them"
        )
    return present[0][1] if present else None


# Control, format (invisible), surrogate and line/paragraph separator characters. Cs: a lone
# surrogate (JSON's "\ud800") is no character at all and cannot be UTF-8 encoded.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def has_refused_character(value: str) -> bool:
    """isprintable() is False for every refused character (and a few more, e.g. non-breaking
    spaces): a C-speed pass first, the per-character category scan only then."""
    return not value.isprintable() and any(
        unicodedata.category(ch) in REFUSED_CATEGORIES for ch in value
    )


def _check_name(field_name: str, value: Any, max_len: int) -> str:
    if not isinstance(value, str):
        raise bad_request("invalid_field", f"{field_name} must be a string")
    if not value.strip():
        raise bad_request(f"invalid_{field_name}", f"{field_name} must not be empty")
    if has_refused_character(value):
        raise bad_request(
            f"invalid_{field_name}",
            f"{field_name} contains control, invisible or unpaired surrogate characters",
        )
    size = len(value) if value.isascii() else len(value.encode())
    if size > max_len:  # LiveKit counts UTF-8 bytes
        raise bad_request(
            f"invalid_{field_name}",
            f"{field_name} is {size} bytes in UTF-8; the limit is {max_len}",
        )
    return value


def _optional_string(field_name: str, value: Any, max_len: int = MAX_METADATA) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request("invalid_field", f"{field_name} must be a string")
    if len(value) > max_len:
        raise bad_request("invalid_field", f"{field_name} is over {max_len} characters")
    return value


def _attributes(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise bad_request(
            "invalid_field", "participant_attributes must be an object of string values"
        )
    return value


def _agent(value: Any) -> AgentRequest | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request("invalid_field", "room_config must be an object")
    agents = value.get("agents")
    if agents is None or agents == []:
        return None
    if not isinstance(agents, list) or not all(isinstance(a, dict) for a in agents):
        raise bad_request("invalid_field", "room_config.agents must be a list of objects")
    if len(agents) > 1:
        raise bad_request("invalid_field", "room_config.agents may name one agent per request")
    entry = agents[0]
    name = entry.get("agent_name", entry.get("agentName"))
    name = _check_name("agent_name", name, MAX_PARTICIPANT_NAME)
    metadata = entry.get("metadata")
    if isinstance(metadata, dict):  # a convenience: objects are sent on as JSON text
        metadata = json.dumps(metadata)
    return AgentRequest(name, _optional_string("room_config.agents[0].metadata", metadata))


def parse_token_request(body: dict[str, Any]) -> TokenRequest:
    """A validated request; raises ApiError (4xx) naming the first field that is wrong."""
    room = _pick(body, "room_name")
    if room is None:
        room = f"room-{uuid.uuid4()}"
    room = _check_name("room_name", room, MAX_ROOM_NAME)

    name = _pick(body, "participant_name")
    name = DEFAULT_PARTICIPANT_NAME if name is None else name
    name = _check_name("participant_name", name, MAX_PARTICIPANT_NAME)

    identity = _pick(body, "participant_identity")
    if identity is not None:
        identity = _check_name("participant_identity", identity, MAX_PARTICIPANT_NAME)

    return TokenRequest(
        room_name=room,
        participant_name=name,
        participant_identity=identity,
        participant_metadata=_optional_string(
            "participant_metadata", _pick(body, "participant_metadata")
        ),
        participant_attributes=_attributes(_pick(body, "participant_attributes")),
        agent=_agent(_pick(body, "room_config")),
        custom={k: v for k, v in body.items() if k not in KNOWN_KEYS},
    )
