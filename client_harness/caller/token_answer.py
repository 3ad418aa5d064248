"""THE one parser of a token endpoint's answer, following the platform's accepted field names.

Everything that reads a token response — `run`, `check`, and the token server's own tests —
goes through `parse_token_response`, so the kit cannot accept a shape the platform would reject
(or the reverse). Standard library only: the token server's tests import it without the harness
extras.

Failures raise `TokenEndpointError`; its `message` is short and stable (for a missing token it is
the platform's own text, `No token found in response`), `detail` says what was seen, `fix` what to
change.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from client_harness.urls import server_url_problem

TOKEN_FIELDS = ("token", "participantToken", "accessToken", "participant_token", "access_token")
SERVER_URL_FIELDS = ("serverUrl", "server_url")
ROOM_FIELDS = ("roomName", "room_name")

NO_TOKEN_MESSAGE = "No token found in response"  # noqa: S105 - the platform's message

# Stable kinds, one per way a token endpoint can fail; tests and reports key on these.
KIND_TIMEOUT = "timeout"
KIND_UNREACHABLE = "unreachable"
KIND_TLS = "tls"
KIND_HTTP_STATUS = "http_status"
KIND_HTML = "html"
KIND_NOT_JSON = "not_json"
KIND_NOT_OBJECT = "not_object"
KIND_NO_TOKEN = "no_token"  # noqa: S105
KIND_SERVER_URL = "server_url"

_BODY_EXCERPT = 200


class TokenEndpointError(Exception):
    """The token endpoint's answer (or its absence) cannot start a simulation."""

    def __init__(self, kind: str, message: str, detail: str = "", fix: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.detail = detail
        self.fix = fix

    def explain(self) -> str:
        """Message, what was seen and the fix, on one line (for logs and reports)."""
        parts = [self.message]
        if self.detail:
            parts.append(self.detail)
        if self.fix:
            parts.append(f"fix: {self.fix}")
        return " — ".join(parts)


@dataclass(frozen=True)
class TokenResponse:
    """What the platform takes from a successful answer."""

    token: str
    token_field: str
    server_url: str  # the URL the caller will connect to
    server_url_source: str  # "response field serverUrl" or "livekit_url (config)"
    room_name: str | None  # as echoed by the endpoint, if it did
    body: dict[str, Any] = field(repr=False, default_factory=dict)
    warnings: tuple[str, ...] = ()


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _BODY_EXCERPT else flat[:_BODY_EXCERPT] + "…"


def _looks_like_html(content_type: str, text: str) -> bool:
    head = text.lstrip()[:100].lower()
    return "html" in content_type.lower() or head.startswith(("<!doctype html", "<html", "<head"))


def _html_title(text: str) -> str:
    match = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    return " ".join(match.group(1).split()) if match else ""


def _status_error(status: int, content_type: str, text: str) -> TokenEndpointError:
    """A non-2xx answer: say what the endpoint said, in its own words where it gave some."""
    seen = ""
    if _looks_like_html(content_type, text):
        title = _html_title(text)
        seen = f"an HTML error page{f' titled {title!r}' if title else ''}"
    else:
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and ("error" in data or "detail" in data):
            seen = f"error={data.get('error')!r} detail={data.get('detail')!r}"
        elif text.strip():
            seen = f"body: {_excerpt(text)}"
        else:
            seen = "an empty body"
    if status in (401, 403):
        fix = (
            "check generate_token_headers: the endpoint's API key or bearer token is missing "
            'or wrong (e.g. {"Authorization": "Bearer <key>"})'
        )
    elif status == 404 or status == 405:
        fix = "check the path of generate_token_endpoint; the endpoint must accept POST"
    elif status >= 500:
        fix = "the endpoint failed while answering: read its logs (is LiveKit reachable from it?)"
    else:
        fix = "the endpoint rejected the platform's request body: read its error detail"
    return TokenEndpointError(
        KIND_HTTP_STATUS, f"Token endpoint answered HTTP {status}", f"got {seen}", fix
    )


def _pick_string(body: dict[str, Any], names: tuple[str, ...]) -> tuple[str, str] | None:
    """First field among `names` holding a non-empty string, as (field, value)."""
    for name in names:
        value = body.get(name)
        if isinstance(value, str) and value.strip():
            return name, value.strip()
    return None


def parse_token_response(
    status: int,
    content_type: str,
    body: bytes | str,
    configured_livekit_url: str = "",
    *,
    insecure: bool = False,
) -> TokenResponse:
    """Turn an HTTP answer into a `TokenResponse`, or raise `TokenEndpointError` saying why not.

    `configured_livekit_url` is the `livekit_url` field; a `serverUrl`/`server_url` in the answer
    overrides it, as the platform does. The effective URL must be ws(s):// (see `urls`).
    """
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    data = _json_object(status, content_type, text)
    token_field, token = _token(data)
    warnings: list[str] = []
    if "json" not in content_type.lower():
        warnings.append(
            f"Content-Type is {content_type or 'missing'}; the platform's guide asks for "
            "application/json"
        )
    server_url, source = _server_url(data, configured_livekit_url, insecure, warnings)
    room = _pick_string(data, ROOM_FIELDS)
    return TokenResponse(
        token=token,
        token_field=token_field,
        server_url=server_url,
        server_url_source=source,
        room_name=room[1] if room else None,
        body=data,
        warnings=tuple(warnings),
    )


def _json_object(status: int, content_type: str, text: str) -> dict[str, Any]:
    """The answer's JSON object, or the error saying what the answer is instead."""
    if not 200 <= status < 300:
        raise _status_error(status, content_type, text)
    if _looks_like_html(content_type, text):
        title = _html_title(text)
        raise TokenEndpointError(
            KIND_HTML,
            "Token endpoint returned an HTML page instead of JSON",
            f"HTTP {status}{f', page title {title!r}' if title else ''}: {_excerpt(text)}",
            "the URL probably points at a web page, a proxy's login/error page or the wrong "
            "path; generate_token_endpoint must be the JSON token route",
        )
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise TokenEndpointError(
            KIND_NOT_JSON,
            "Token endpoint did not return JSON",
            f"HTTP {status}, Content-Type {content_type or 'missing'}: "
            f"{_excerpt(text) or 'empty body'} ({exc})",
            'return a JSON object like {"token": "...", "serverUrl": "wss://..."} '
            "with Content-Type: application/json",
        ) from None
    if not isinstance(data, dict):
        raise TokenEndpointError(
            KIND_NOT_OBJECT,
            NO_TOKEN_MESSAGE,
            f"the JSON answer is a {type(data).__name__}, not an object",
            "return a JSON object with a token field",
        )
    return data


def _token(data: dict[str, Any]) -> tuple[str, str]:
    """(field, token) from the first of the platform's accepted token fields that holds one."""
    found = _pick_string(data, TOKEN_FIELDS)
    if found is not None:
        return found
    present = [name for name in TOKEN_FIELDS if name in data]
    if present:
        detail = "; ".join(
            f"field {name!r} holds {data[name]!r}"[:_BODY_EXCERPT] for name in present
        )
        detail += " (the token must be a non-empty string)"
    else:
        detail = f"fields present: {sorted(data) or 'none'}"
    raise TokenEndpointError(
        KIND_NO_TOKEN,
        NO_TOKEN_MESSAGE,
        detail,
        "put the JWT in one of " + ", ".join(TOKEN_FIELDS) + " as a non-empty string",
    )


def _server_url(
    data: dict[str, Any], configured: str, insecure: bool, warnings: list[str]
) -> tuple[str, str]:
    """(url, where it came from): the answer's serverUrl when it has one, else livekit_url."""
    url_found = _pick_string(data, SERVER_URL_FIELDS)
    if url_found is not None:
        server_url, source = url_found[1], f"response field {url_found[0]}"
    else:
        for name in SERVER_URL_FIELDS:
            if name in data:
                warnings.append(
                    f"response field {name} = {data[name]!r} ignored (not a URL string)"
                )
        server_url, source = configured.strip(), "livekit_url (config)"
    if not server_url:
        raise TokenEndpointError(
            KIND_SERVER_URL,
            "No LiveKit server URL",
            "the answer has no serverUrl/server_url and livekit_url is not configured",
            "return serverUrl in the token response, or set livekit_url",
        )
    problem = server_url_problem(server_url, insecure=insecure)
    if problem:
        raise TokenEndpointError(
            KIND_SERVER_URL,
            f"Bad LiveKit server URL from {source}",
            problem,
            "serverUrl must be the LiveKit server's public wss:// URL"
            if source.startswith("response")
            else "set livekit_url to the LiveKit server's public wss:// URL",
        )
    return server_url, source
