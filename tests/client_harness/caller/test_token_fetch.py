"""The request body/headers the platform sends, and transport failures against stand-in endpoints.

The stand-ins are tiny local HTTP servers playing a *broken customer deployment* (500, HTML, an
empty token, a wrong server URL, a hang) — not LiveKit, which is always the real server.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from client_harness.caller.token_answer import (
    KIND_HTML,
    KIND_HTTP_STATUS,
    KIND_NO_TOKEN,
    KIND_SERVER_URL,
    KIND_TIMEOUT,
    KIND_UNREACHABLE,
    NO_TOKEN_MESSAGE,
    TokenEndpointError,
)
from client_harness.caller.token_fetch import build_token_request, request_token
from client_harness.config import HarnessConfig, load_config

BASE = {
    "generate_token_endpoint": "https://api.example.com/t",
    "livekit_url": "wss://lk.example.com",
}


def config(**fields: object) -> HarnessConfig:
    return load_config(env={}, overrides={**BASE, **fields})


def test_platform_body_and_default_headers() -> None:
    request = build_token_request(config(), "room-1")
    assert request.body == {"room_name": "room-1", "participant_name": "simulated_user"}
    assert request.headers == {"Content-Type": "application/json"}
    assert request.url == BASE["generate_token_endpoint"]


def test_custom_payload_merged_at_top_level() -> None:
    request = build_token_request(config(token_request_payload='{"agent_variant": "sales"}'), "r")
    assert request.body == {
        "agent_variant": "sales",
        "room_name": "r",
        "participant_name": "simulated_user",
    }


def test_agent_name_and_metadata_go_into_room_config() -> None:
    request = build_token_request(
        config(livekit_agent_name="voice-assistant", livekit_agent_metadata="{'role': 'x'}"), "r"
    )
    assert request.body["room_config"] == {
        "agents": [{"agent_name": "voice-assistant", "metadata": "{'role': 'x'}"}]
    }


def test_headers_override_case_insensitively() -> None:
    request = build_token_request(
        config(
            generate_token_headers=json.dumps(
                {"content-type": "application/json; charset=utf-8", "X-Api-Key": "k"}
            )
        ),
        "r",
    )
    assert request.headers == {"content-type": "application/json; charset=utf-8", "X-Api-Key": "k"}


def test_sandbox_mode() -> None:
    request = build_token_request(
        config(sandbox_id="sb-123", sandbox_base_url="http://127.0.0.1:9/", livekit_agent_name="a"),
        "r",
    )
    assert request.url == "http://127.0.0.1:9/api/v2/sandbox/connection-details"
    assert request.headers["X-Sandbox-ID"] == "sb-123"
    assert request.body["room_config"]["agents"][0]["agent_name"] == "a"


# ---- stand-in endpoints -------------------------------------------------------------------


class StandIn:
    """A local HTTP server answering every POST with a canned (status, content type, body)."""

    def __init__(self) -> None:
        self.answer: tuple[int, str, bytes] = (200, "application/json", b"{}")
        self.delay = 0.0
        self.seen: list[tuple[str, dict[str, str], dict]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                owner.seen.append(
                    (self.path, dict(self.headers), json.loads(self.rfile.read(length)))
                )
                if owner.delay:
                    threading.Event().wait(owner.delay)
                status, ctype, body = owner.answer
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    server = StandIn()
    yield server
    server.close()


async def call(stand_in: StandIn, **fields: object):
    cfg = load_config(
        env={},
        overrides={
            "generate_token_endpoint": stand_in.url + "/livekit/token",
            "livekit_url": "ws://127.0.0.1:7880",
            **fields,
        },
    )
    async with httpx.AsyncClient() as client:
        return await request_token(client, cfg, "room-x")


async def failure(stand_in: StandIn, **fields: object) -> TokenEndpointError:
    with pytest.raises(TokenEndpointError) as info:
        await call(stand_in, **fields)
    return info.value


async def test_request_reaches_the_endpoint_as_the_platform_sends_it(stand_in: StandIn) -> None:
    stand_in.answer = (
        200,
        "application/json",
        b'{"token": "a.b.c", "serverUrl": "ws://127.0.0.1:1"}',
    )
    result = await call(
        stand_in,
        generate_token_headers='{"Authorization": "Bearer k"}',
        token_request_payload='{"language": "en"}',
    )
    path, headers, body = stand_in.seen[0]
    assert path == "/livekit/token"
    assert headers["Authorization"] == "Bearer k"
    assert body == {"language": "en", "room_name": "room-x", "participant_name": "simulated_user"}
    assert result.response.token == "a.b.c" and result.response.server_url == "ws://127.0.0.1:1"
    assert result.seconds > 0


async def test_sandbox_stand_in(stand_in: StandIn) -> None:
    stand_in.answer = (
        200,
        "application/json",
        b'{"participantToken": "t.t.t", "serverUrl": "ws://127.0.0.1:2"}',
    )
    result = await call(stand_in, sandbox_id="sb-1", sandbox_base_url=stand_in.url)
    path, headers, _ = stand_in.seen[0]
    assert path == "/api/v2/sandbox/connection-details" and headers["X-Sandbox-ID"] == "sb-1"
    assert result.response.token == "t.t.t"


async def test_500(stand_in: StandIn) -> None:
    stand_in.answer = (500, "application/json", b'{"error": "internal", "detail": "boom"}')
    err = await failure(stand_in)
    assert err.kind == KIND_HTTP_STATUS and "HTTP 500" in str(err) and "boom" in err.detail


async def test_html(stand_in: StandIn) -> None:
    stand_in.answer = (200, "text/html", b"<html><head><title>Welcome</title></head></html>")
    assert (await failure(stand_in)).kind == KIND_HTML


async def test_empty_token(stand_in: StandIn) -> None:
    stand_in.answer = (200, "application/json", b'{"token": "", "serverUrl": "ws://127.0.0.1:1"}')
    err = await failure(stand_in)
    assert (err.kind, str(err)) == (KIND_NO_TOKEN, NO_TOKEN_MESSAGE)


async def test_wrong_server_url(stand_in: StandIn) -> None:
    stand_in.answer = (
        200,
        "application/json",
        b'{"token": "a.b.c", "serverUrl": "https://lk.example.com"}',
    )
    err = await failure(stand_in)
    assert err.kind == KIND_SERVER_URL and "wss://lk.example.com" in err.detail


async def test_timeout(stand_in: StandIn) -> None:
    stand_in.delay = 2.0
    err = await failure(stand_in, request_timeout=0.3)
    assert err.kind == KIND_TIMEOUT and "0.3 s" in str(err)


async def test_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = load_config(
        env={},
        overrides={
            "generate_token_endpoint": f"http://127.0.0.1:{port}/t",
            "livekit_url": "ws://127.0.0.1:7880",
        },
    )
    async with httpx.AsyncClient() as client:
        with pytest.raises(TokenEndpointError) as info:
            await request_token(client, cfg, "r")
    assert info.value.kind == KIND_UNREACHABLE and str(port) in info.value.detail
