"""Step 2 of the platform's flow: POST the token request exactly as the platform builds it.

Body: `{"room_name": <uuid>, "participant_name": "simulated_user"}` merged with the custom
payload, plus LiveKit's standard `room_config.agents` entry when an agent name or metadata is
configured. In sandbox mode the same body goes to LiveKit Cloud's sandbox token server with an
`X-Sandbox-ID` header. Transport failures become `TokenEndpointError`s with their own kinds.
"""

from __future__ import annotations

import ssl
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from client_harness.caller.token_answer import (
    KIND_TIMEOUT,
    KIND_TLS,
    KIND_UNREACHABLE,
    TokenEndpointError,
    TokenResponse,
    parse_token_response,
)
from client_harness.config import HarnessConfig

PARTICIPANT_NAME = "simulated_user"


def new_room_name() -> str:
    """A fresh room per simulation, as the platform does."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class TokenRequest:
    url: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass(frozen=True)
class TokenResult:
    request: TokenRequest
    response: TokenResponse
    status: int
    seconds: float  # request sent → answer parsed


def build_token_request(config: HarnessConfig, room_name: str) -> TokenRequest:
    """The request the platform would send for `room_name` with this config."""
    body: dict[str, Any] = dict(config.payload)
    body["room_name"] = room_name
    body["participant_name"] = PARTICIPANT_NAME
    if (config.livekit_agent_name or config.livekit_agent_metadata) and "room_config" not in body:
        agent: dict[str, str] = {}
        if config.livekit_agent_name:
            agent["agent_name"] = config.livekit_agent_name
        if config.livekit_agent_metadata:
            agent["metadata"] = config.livekit_agent_metadata
        body["room_config"] = {"agents": [agent]}
    headers = {"Content-Type": "application/json"}
    if config.sandbox_id.strip():
        headers["X-Sandbox-ID"] = config.sandbox_id.strip()
        url = config.sandbox_url
    else:
        url = config.generate_token_endpoint.strip()
    # Configured headers win, compared case-insensitively (HTTP header names are).
    for key, value in config.headers.items():
        for existing in [k for k in headers if k.lower() == key.lower()]:
            del headers[existing]
        headers[key] = value
    return TokenRequest(url=url, headers=headers, body=body)


def transport_error(
    exc: httpx.HTTPError, request: TokenRequest, timeout: float
) -> TokenEndpointError:
    where = f"POST {request.url}"
    if isinstance(exc, httpx.TimeoutException):
        return TokenEndpointError(
            KIND_TIMEOUT,
            f"Token endpoint did not answer within {timeout:g} s",
            f"{where}: {type(exc).__name__}",
            "make the endpoint answer quickly (is its LiveKit dispatch call hanging?) and check "
            "it is reachable from the internet",
        )
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return TokenEndpointError(
                KIND_TLS,
                "TLS handshake with the token endpoint failed",
                f"{where}: {cause}",
                "serve a valid certificate for this host name (HTTPS must be properly configured)",
            )
        cause = cause.__cause__ or cause.__context__
    return TokenEndpointError(
        KIND_UNREACHABLE,
        "Token endpoint unreachable",
        f"{where}: {type(exc).__name__}: {exc}",
        "check the host and port, that the endpoint is running and publicly reachable "
        "(e.g. through a tunnel for a local endpoint)",
    )


async def post_token_request(
    client: httpx.AsyncClient, config: HarnessConfig, request: TokenRequest
) -> httpx.Response:
    """Send `request`; transport failures (timeout, refused, TLS) raise `TokenEndpointError`."""
    try:
        return await client.post(
            request.url, json=request.body, headers=request.headers, timeout=config.request_timeout
        )
    except httpx.HTTPError as exc:
        raise transport_error(exc, request, config.request_timeout) from None


def read_answer(config: HarnessConfig, answer: httpx.Response) -> TokenResponse:
    """The endpoint's HTTP answer read as the platform reads it, with this config's URL rules."""
    return parse_token_response(
        answer.status_code,
        answer.headers.get("content-type", ""),
        answer.content,
        config.livekit_url,
        insecure=config.insecure,
    )


async def request_token(
    client: httpx.AsyncClient, config: HarnessConfig, room_name: str
) -> TokenResult:
    """POST the request and parse the answer; raises `TokenEndpointError` on any failure."""
    request = build_token_request(config, room_name)
    started = time.perf_counter()
    answer = await post_token_request(client, config, request)
    response = read_answer(config, answer)
    return TokenResult(
        request=request,
        response=response,
        status=answer.status_code,
        seconds=time.perf_counter() - started,
    )
