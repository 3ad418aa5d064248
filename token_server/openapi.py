"""The endpoint's OpenAPI 3.1 document, served at GET /openapi.json and committed as
docs/openapi.json (for the settings of `documented_settings`). Regenerate the committed copy with

    uv run python -m token_server.openapi > docs/openapi.json

It is built from what the code itself checks — the limits and accepted spellings of
`token_request`, the refused characters (from `has_refused_character`, over this Python's Unicode
tables), the strict-mode codes of `dispatch_follow.Blocker`, the configured path, metrics and
auth — so a change there shows up here; `tests/token_server/test_openapi.py` checks the rest
(every error code the source can raise is documented, live answers match the document).
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from token_server.config import (
    METRICS_PATH,
    OPENAPI_PATH,
    SERVER_URL_SCHEMES,
    Settings,
    load_settings,
)
from token_server.dispatch_follow import Blocker
from token_server.token_request import (
    ALIASES,
    DEFAULT_PARTICIPANT_NAME,
    MAX_BODY_BYTES,
    MAX_METADATA,
    MAX_PARTICIPANT_NAME,
    MAX_ROOM_NAME,
    REFUSED_CATEGORIES,
    has_refused_character,
)

API_VERSION = "1.0.0"  # the contract's version: bump it when the document changes meaning
HEALTHZ_PATH = "/healthz"
READYZ_PATH = "/readyz"
SCHEMAS = "#/components/schemas/"
RESPONSES = "#/components/responses/"
HEADERS = "#/components/headers/"
_UNICODE_END = 0x110000
_SURROGATES = range(0xD800, 0xE000)

# Every error code, by status, with what it means. The route's own errors (400 to 504) come from
# ApiError/bad_request in token_server/; 503's strict-mode codes are Blocker's values.
ERRORS: dict[int, dict[str, str]] = {
    400: {
        "invalid_json": "the body is not JSON (or not UTF-8, nested too deeply, or holds a number "
        "past Python's digit limit)",
        "invalid_body": "the body is JSON but not an object",
        "invalid_field": "a field has the wrong type, a metadata string is too long, or "
        "`room_config.agents` is not a list of at most one object",
        "conflicting_fields": "the snake_case and camelCase spellings of one field disagree",
        "invalid_room_name": "`room_name` is blank, too long or holds a refused character",
        "invalid_participant_name": "`participant_name` is blank, too long or holds a refused "
        "character",
        "invalid_participant_identity": "`participant_identity` is blank, too long or holds a "
        "refused character",
        "invalid_agent_name": "`room_config.agents[0].agent_name` is blank, too long or holds a "
        "refused character",
    },
    401: {"unauthorized": "no API key, or one that is not in TOKEN_SERVER_API_KEYS"},
    403: {
        "agent_not_allowed": "`room_config.agents[0].agent_name` is neither AGENT_NAME nor in "
        "ALLOWED_AGENT_NAMES"
    },
    404: {"not_found": "no route at this path"},
    405: {"method_not_allowed": "the path exists but not for this method (`Allow` lists those)"},
    413: {"body_too_large": f"the body is over {MAX_BODY_BYTES} bytes"},
    499: {"client_disconnected": "the caller hung up while sending the body"},
    500: {"internal_error": "an unexpected error in the token server (logged with its trace)"},
    502: {
        "livekit_unreachable": "LiveKit's server API cannot be reached",
        "dispatch_refused": "LiveKit refused the dispatch (e.g. a wrong API key pair)",
    },
    503: {
        Blocker.NOT_TAKEN.value: "strict mode: no worker took the agent's job in time",
        Blocker.JOB_FAILED.value: "strict mode: a worker took the job and the job failed",
        Blocker.LIVEKIT.value: "strict mode: LiveKit's API failed while the job was awaited",
        "room_busy": "another request for the same room held its dispatch lock too long",
        "redis_unavailable": (
            "REDIS_URL is set, the room existed without the agent (the case that takes the lock) "
            "and Redis cannot be reached"
        ),
    },
    504: {"livekit_timeout": "LiveKit did not answer within DISPATCH_TIMEOUT_SECONDS"},
}
READYZ_ERRORS = {
    503: {
        "livekit_unavailable": "LiveKit's API does not accept a call with the configured key pair",
        "redis_unavailable": "REDIS_URL is set (api mode) and Redis does not answer a PING",
    }
}
_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    413: "Body too large",
    499: "Client closed the request",
    500: "Internal error",
    502: "Bad gateway",
    503: "Unavailable",
    504: "Gateway timeout",
}


EXAMPLE_AGENT = "voice-assistant"
REQUEST_EXAMPLES: dict[str, dict[str, Any]] = {
    "platform": {
        "summary": "The simulation platform's request, with its custom payload merged in",
        "value": {
            "room_name": "5f0c2a9e-8d1b-4c3e-9f6a-2b7d4e1c8a90",
            "participant_name": "simulated_user",
            "agent_variant": "sales",
            "language": "en",
        },
    },
    "livekit": {
        "summary": "LiveKit's standard token-endpoint request (TokenSource.endpoint)",
        "value": {
            "room_name": "support-call-42",
            "participant_identity": "caller-42",
            "participant_name": "Ann",
            "participant_metadata": '{"tier": "gold"}',
            "participant_attributes": {"tier": "gold"},
            "room_config": {
                "agents": [{"agent_name": EXAMPLE_AGENT, "metadata": "{'role': 'assistant'}"}]
            },
        },
    },
    "camelCase": {
        "summary": "The same in camelCase",
        "value": {
            "roomName": "support-call-43",
            "participantName": "Ann",
            "roomConfig": {"agents": [{"agentName": EXAMPLE_AGENT}]},
        },
    },
    "empty": {"summary": "No body: a made-up room, the participant `user`", "value": {}},
}


def documented_settings() -> Settings:
    """The settings docs/openapi.json is written for: every default, with the variables the server
    cannot start without set (an API key among them: auth is on)."""
    return load_settings(
        {
            "LIVEKIT_URL": "wss://livekit.example.com",
            "LIVEKIT_API_KEY": "key",
            "LIVEKIT_API_SECRET": "secret",
            "AGENT_NAME": EXAMPLE_AGENT,
            "TOKEN_SERVER_API_KEYS": "any",
        }
    )


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The document for a server running with `settings` (its path, auth, metrics)."""
    return json.loads(_rendered(settings.path, settings.metrics, settings.auth_required))


def render(document: dict[str, Any]) -> str:
    """The committed and served form: indented, keys sorted, ASCII (no invisible characters)."""
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


async def openapi_route(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    # built once per process; the first build scans Unicode (~0.2 s): off the event loop
    body = await run_in_threadpool(
        _rendered, settings.path, settings.metrics, settings.auth_required
    )
    return Response(body, media_type="application/json")


@functools.cache
def _rendered(path: str, metrics: bool, auth: bool) -> str:
    return render(_document(path, metrics, auth))


# --- what a name may hold ---------------------------------------------------------------------


def _char_class(code_points: list[int]) -> str:
    """Consecutive code points as ranges, in a regex character class's own syntax."""
    parts: list[str] = []
    start = previous = -2
    for cp in [*code_points, -2]:
        if cp == previous + 1:
            previous = cp
            continue
        if start >= 0:
            parts.append(chr(start) if start == previous else f"{chr(start)}-{chr(previous)}")
        start = previous = cp
    return "".join(parts)


@functools.cache
def name_pattern() -> str:
    """A name's regex: no refused character anywhere, and one that is not blank (`str.strip()`
    removes exactly the `isspace()` characters). Written with the characters themselves, not with
    `\\s` or `\\p{...}`, which regex engines read differently. Unpaired surrogates, refused too,
    are left out: no engine a validator runs holds them in a string."""
    refused: list[int] = []
    blank: list[int] = []
    for cp in range(_UNICODE_END):
        if cp in _SURROGATES:
            continue
        char = chr(cp)
        if has_refused_character(char):
            refused.append(cp)
        elif char.isspace():
            blank.append(cp)
    not_refused = f"[^{_char_class(refused)}]"
    return f"^{not_refused}*[^{_char_class(sorted(refused + blank))}]{not_refused}*$"


def _name(what: str, limit: int, nullable: bool = True) -> dict[str, Any]:
    categories = ", ".join(sorted(REFUSED_CATEGORIES))
    return {
        "type": ["string", "null"] if nullable else "string",
        "minLength": 1,
        "maxLength": limit,
        "pattern": name_pattern(),
        "description": (
            f"{what} At most {limit} bytes of UTF-8, LiveKit's unit (`maxLength` counts "
            "characters: it is the bound for ASCII, and a name of fewer characters can still be "
            "too long). Not blank, and no character of the Unicode categories "
            f"{categories} (control, invisible format, line or paragraph separator, unpaired "
            "surrogate): `pattern`."
            + (" `null` is the same as leaving it out." if nullable else "")
        ),
    }


# --- the request ------------------------------------------------------------------------------


def _request_fields() -> dict[str, dict[str, Any]]:
    """One schema per field of the request, which both of its spellings refer to."""
    room = _name(
        "The LiveKit room (the platform sends a UUID). Left out: `room-<uuid>` is made up.",
        MAX_ROOM_NAME,
    )
    name = _name(
        f"The caller's display name. Left out: `{DEFAULT_PARTICIPANT_NAME}`.", MAX_PARTICIPANT_NAME
    )
    name["default"] = DEFAULT_PARTICIPANT_NAME
    identity = _name(
        "The caller's LiveKit identity. Left out: the name plus a random suffix, so a retried "
        "request never disconnects the first caller.",
        MAX_PARTICIPANT_NAME,
    )
    fields: dict[str, dict[str, Any]] = {
        "room_name": room,
        "participant_name": name,
        "participant_identity": identity,
        "participant_metadata": {
            "type": ["string", "null"],
            "maxLength": MAX_METADATA,
            "description": "Put in the token as the participant's metadata.",
        },
        "participant_attributes": {
            "type": ["object", "null"],
            "additionalProperties": {"type": "string"},
            "description": "Put in the token as the participant's attributes (string values).",
        },
        "room_config": _room_config(),
    }
    return {_component_name(canonical): schema for canonical, schema in fields.items()}


def _component_name(canonical: str) -> str:
    return "".join(word.capitalize() for word in canonical.split("_"))


def _token_request() -> dict[str, Any]:
    properties = {
        spelling: {"$ref": SCHEMAS + _component_name(canonical)}
        for canonical, spellings in ALIASES.items()
        for spelling in spellings
    }
    return {
        "type": "object",
        "title": "Token request",
        "description": (
            "Both shapes callers send, in snake_case or camelCase: the platform's "
            "`{room_name, participant_name, ...custom fields}` and LiveKit's standard "
            "token-endpoint request (`participant_identity`, `participant_metadata`, "
            "`participant_attributes`, `room_config.agents`). Every other key is a custom field: "
            "it travels to the agent in its dispatch metadata under `custom`. Send one spelling "
            "of a field; both are accepted only when their values are equal (else 400 "
            "`conflicting_fields`), which a schema cannot say: it allows one."
        ),
        "properties": properties,
        "additionalProperties": {"description": "A custom field: any JSON value."},
        "allOf": [
            {"not": {"required": list(spellings)}}
            for spellings in ALIASES.values()
            if len(spellings) > 1
        ],
    }


def _room_config() -> dict[str, Any]:
    agent_name = _name(
        "The agent to dispatch: AGENT_NAME or one of ALLOWED_AGENT_NAMES (else 403).",
        MAX_PARTICIPANT_NAME,
        nullable=False,
    )
    return {
        "type": ["object", "null"],
        "description": "LiveKit's room configuration; only `agents` is read.",
        "properties": {
            "agents": {
                "type": ["array", "null"],
                "maxItems": 1,
                "description": "At most one agent per request; empty or `null`: AGENT_NAME.",
                "items": {
                    "type": "object",
                    "properties": {
                        "agent_name": agent_name,
                        "metadata": {
                            "anyOf": [
                                {"type": "string", "maxLength": MAX_METADATA},
                                {"type": "object"},
                                {"type": "null"},
                            ],
                            "description": (
                                "Passed to the agent verbatim as `requested_agent_metadata`; an "
                                f"object is sent on as its JSON text (at most {MAX_METADATA} "
                                "characters)."
                            ),
                        },
                    },
                    "anyOf": [
                        {"required": ["agent_name"]},
                        {
                            "required": ["agentName"],
                            "properties": {"agentName": agent_name},
                            "description": "`agentName` counts only without `agent_name`.",
                        },
                    ],
                },
            }
        },
    }


# --- the answers ------------------------------------------------------------------------------


def _token_answer() -> dict[str, Any]:
    def text(description: str) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "description": description}

    token = {
        **text("The LiveKit JWT: joins this one room, publishes, subscribes, sends data."),
        "pattern": r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
    }
    schemes = "|".join(SERVER_URL_SCHEMES)
    url = {
        **text("Where to connect: LIVEKIT_PUBLIC_URL, else LIVEKIT_URL."),
        "pattern": f"^({schemes})://",
    }
    always = {
        "token": token,
        "participant_token": {**token, "description": "The same token."},
        "participantToken": {**token, "description": "The same token."},
        "serverUrl": url,
        "server_url": {**url, "description": "The same URL."},
        "room_name": text("The room the token joins (the one asked for, or a made-up one)."),
        "roomName": text("The same room."),
        "participant_identity": text("The identity in the token."),
        "participant_name": text("The name in the token."),
        "participantName": text("The same name."),
    }
    return {
        "type": "object",
        "title": "Token answer",
        "description": (
            "Every spelling the platform and LiveKit's SDKs accept of each field. `agent_name` "
            "is there when an agent is dispatched (DISPATCH_MODE `api` or `token`); "
            "`dispatch_id` when the room already had the agent's dispatch (`api`: a retry, or "
            "a request for a live room). A request that creates the room dispatches the agent "
            "with it in one call, whose answer carries no dispatch id."
        ),
        "required": sorted(always),
        "additionalProperties": False,
        "properties": {
            **always,
            "agent_name": text("The agent dispatched into the room."),
            "dispatch_id": text(
                "LiveKit's dispatch (`AD_...`) of the agent in the room, when the room already "
                "had it: a retried request is told the dispatch the first request made."
            ),
        },
    }


def _error_schema(codes: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["error", "detail"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "string",
                "enum": sorted(codes),
                "description": "A stable code: "
                + "; ".join(f"`{code}`: {meaning}" for code, meaning in sorted(codes.items())),
            },
            "detail": {"type": "string", "description": "What was wrong, for people."},
        },
    }


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _header(ref: str) -> dict[str, Any]:
    return {"$ref": HEADERS + ref}


def _error_response(status: int, codes: dict[str, str], note: str = "") -> dict[str, Any]:
    headers = {"X-Request-ID": _header("X-Request-ID")}
    if status == 401:
        headers["WWW-Authenticate"] = _header("WWW-Authenticate")
    if status == 405:
        headers["Allow"] = _header("Allow")
    if status == 503:
        headers["Retry-After"] = _header("Retry-After")
    return {
        "description": f"{_TITLES[status]}: `{{error, detail}}`. {note}".strip(),
        "headers": headers,
        "content": _json(_error_schema(codes)),
    }


_NOTES = {
    404: "The token route never answers it: any path the server does not serve does (most often "
    "a caller set up with another path than TOKEN_SERVER_PATH).",
    405: "Any method other than the path's own.",
    499: "Nobody reads it: the caller hung up (mid-body: this JSON; once the body was read, while "
    "the agent was dispatched: no body, and the dispatch is withdrawn).",
    503: "No token was issued and nothing is left dispatched; retry after `Retry-After` seconds. "
    f"{', '.join(f'`{b.value}`' for b in Blocker)}: strict mode (DISPATCH_STRICT=1) only.",
}


# --- the document -----------------------------------------------------------------------------


def _document(path: str, metrics: bool, auth: bool) -> dict[str, Any]:
    security: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"apiKeyAuth": []}] if auth else []
    responses = {
        f"Error{status}": _error_response(status, codes, _NOTES.get(status, ""))
        for status, codes in ERRORS.items()
    }
    token_errors = [status for status in ERRORS if auth or status != 401]
    paths: dict[str, Any] = {
        path: {"post": _token_operation(security, token_errors)},
        HEALTHZ_PATH: {"get": _healthz()},
        READYZ_PATH: {"get": _readyz()},
        OPENAPI_PATH: {"get": _openapi_operation()},
    }
    if metrics:
        paths[METRICS_PATH] = {"get": _metrics_operation(security, auth)}
    components: dict[str, Any] = {
        "schemas": {
            "TokenRequest": _token_request(),
            **_request_fields(),
            "TokenAnswer": _token_answer(),
        },
        "responses": responses,
        "headers": _headers(),
    }
    if auth:
        components["securitySchemes"] = {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "`Authorization: Bearer <one of TOKEN_SERVER_API_KEYS>`.",
            },
            "apiKeyAuth": {
                "type": "apiKey",
                "in": "header",
                "name": "X-API-Key",
                "description": "`X-API-Key: <one of TOKEN_SERVER_API_KEYS>`, the same keys.",
            },
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "LiveKit token endpoint (Coval x LiveKit kit)",
            "version": API_VERSION,
            "description": (
                "Mints a LiveKit access token for one room and dispatches the agent into it "
                "before answering. Every error is JSON `{error, detail}` with a stable code; "
                "every answer carries `X-Request-ID`. "
                + (
                    "The token route and /metrics need an API key."
                    if auth
                    else "This server runs without API keys (TOKEN_SERVER_ALLOW_NO_AUTH=1)."
                )
            ),
        },
        "paths": paths,
        "components": components,
    }


def _headers() -> dict[str, Any]:
    return {
        "X-Request-ID": {
            "required": True,
            "description": "The caller's X-Request-ID when it matches the pattern, else a fresh "
            "id; the request's log line carries it.",
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"},
        },
        "Cache-Control": {
            "required": True,
            "description": "Tokens and metrics are never cached.",
            "schema": {"type": "string", "enum": ["no-store"]},
        },
        "Retry-After": {
            "required": True,
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "integer", "minimum": 1},
        },
        "WWW-Authenticate": {
            "required": True,
            "schema": {"type": "string", "enum": ["Bearer"]},
        },
        "Allow": {
            "required": True,
            "description": "The methods the path takes.",
            "schema": {"type": "string"},
        },
    }


def _request_id_only() -> dict[str, Any]:
    return {"X-Request-ID": _header("X-Request-ID")}


def _token_operation(security: list[dict[str, list[str]]], errors: list[int]) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {
            "description": "The token, where to connect, and the dispatched agent.",
            "headers": {
                "X-Request-ID": _header("X-Request-ID"),
                "Cache-Control": _header("Cache-Control"),
            },
            "content": _json({"$ref": SCHEMAS + "TokenAnswer"}),
        }
    }
    for status in errors:
        responses[str(status)] = {"$ref": f"{RESPONSES}Error{status}"}
    return {
        "operationId": "issueToken",
        "summary": "Mint a LiveKit token for one room and dispatch the agent into it",
        "description": (
            "Everything that can refuse the request (auth, validation, allowed agents, the token) "
            "runs before anything is dispatched. In DISPATCH_MODE `api` the agent is dispatched "
            "through LiveKit before the answer, once per room (a retry gets the same dispatch). "
            "The path is TOKEN_SERVER_PATH. A browser on a TOKEN_SERVER_CORS_ORIGINS origin may "
            "call it too (CORS preflight answered by the server)."
        ),
        "security": security,
        "requestBody": {
            "required": False,
            "description": (
                f"A JSON object of at most {MAX_BODY_BYTES} bytes; an empty body is `{{}}`. The "
                "Content-Type header is not checked: the body is read as JSON whatever it says."
            ),
            "content": {
                "application/json": {
                    "schema": {"$ref": SCHEMAS + "TokenRequest"},
                    "examples": REQUEST_EXAMPLES,
                }
            },
        },
        "responses": responses,
    }


def _healthz() -> dict[str, Any]:
    return {
        "operationId": "healthz",
        "summary": "Liveness: answers while the process is alive",
        "security": [],
        "responses": {
            "200": {
                "description": "Alive.",
                "headers": _request_id_only(),
                "content": _json(
                    {
                        "type": "object",
                        "required": ["status"],
                        "additionalProperties": False,
                        "properties": {"status": {"type": "string", "enum": ["ok"]}},
                    }
                ),
            },
            "405": {"$ref": RESPONSES + "Error405"},
        },
    }


def _readyz() -> dict[str, Any]:
    return {
        "operationId": "readyz",
        "summary": "Readiness: LiveKit accepts the key pair (and Redis answers, with REDIS_URL)",
        "security": [],
        "responses": {
            "200": {
                "description": "Ready to issue tokens.",
                "headers": _request_id_only(),
                "content": _json(
                    {
                        "type": "object",
                        "required": ["status", "livekit_url"],
                        "additionalProperties": False,
                        "properties": {
                            "status": {"type": "string", "enum": ["ready"]},
                            "livekit_url": {"type": "string", "description": "LIVEKIT_URL."},
                        },
                    }
                ),
            },
            "405": {"$ref": RESPONSES + "Error405"},
            "503": {
                "description": "Not ready: `{error, detail}`.",
                "headers": _request_id_only(),
                "content": _json(_error_schema(READYZ_ERRORS[503])),
            },
        },
    }


def _openapi_operation() -> dict[str, Any]:
    return {
        "operationId": "openapi",
        "summary": "This document, for this server's settings",
        "security": [],
        "responses": {
            "200": {
                "description": "The OpenAPI 3.1 document.",
                "headers": _request_id_only(),
                "content": _json(
                    {"type": "object", "required": ["openapi", "info", "paths"]},
                ),
            },
            "405": {"$ref": RESPONSES + "Error405"},
        },
    }


def _metrics_operation(security: list[dict[str, list[str]]], auth: bool) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {
            "description": "Prometheus's text exposition format.",
            "headers": {
                "X-Request-ID": _header("X-Request-ID"),
                "Cache-Control": _header("Cache-Control"),
            },
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        "405": {"$ref": RESPONSES + "Error405"},
    }
    if auth:
        responses["401"] = {"$ref": RESPONSES + "Error401"}
    return {
        "operationId": "metrics",
        "summary": "Prometheus metrics (TOKEN_SERVER_METRICS=1, the default), behind the API key",
        "security": security,
        "responses": responses,
    }


def main() -> int:
    sys.stdout.write(render(openapi_document(documented_settings())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
