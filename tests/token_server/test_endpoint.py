"""The token endpoint against the real livekit-server: tokens, joins, dispatch, auth, bad input."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from livekit import api, rtc

from client_harness.caller.token_answer import parse_token_response
from local_stack import LiveKitServer, LocalStack, TokenServer
from tests.conftest import TokenServerFactory, auth_headers

pytestmark = pytest.mark.integration

PLATFORM_BODY = {"participant_name": "simulated_user", "agent_variant": "sales", "language": "en"}


def post(server: TokenServer, body: Any = None, **kwargs: Any) -> httpx.Response:
    headers = {**auth_headers(server), **kwargs.pop("headers", {})}
    if body is not None:
        kwargs["json"] = body
    return httpx.post(server.endpoint, headers=headers, timeout=30, **kwargs)


def new_room() -> str:
    return str(uuid.uuid4())


async def list_dispatches(livekit: LiveKitServer, room: str) -> list[api.AgentDispatch]:
    async with api.LiveKitAPI(livekit.url, livekit.api_key, livekit.api_secret) as lkapi:
        return await lkapi.agent_dispatch.list_dispatch(room)


def request_lines(server: TokenServer, room: str) -> list[dict[str, Any]]:
    """The request log lines of `room` (the log writer batches lines: wait for them first)."""
    lines = server.process.log_text().splitlines()
    records = [json.loads(line[line.index("{") :]) for line in lines if '"event":"request"' in line]
    return [r for r in records if r.get("room") == room]


def named(dispatches: list[api.AgentDispatch]) -> list[api.AgentDispatch]:
    # livekit-server adds a default, unnamed dispatch to a room created without agents.
    return [d for d in dispatches if d.agent_name]


async def test_token_verifies_with_exact_grants(
    token_server: TokenServer, livekit_server: LiveKitServer
) -> None:
    room = new_room()
    before = int(time.time())
    resp = post(token_server, {"room_name": room, **PLATFORM_BODY})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["cache-control"] == "no-store"
    body = resp.json()

    # The superset every known caller accepts.
    token = body["token"]
    assert body["participant_token"] == body["participantToken"] == token
    assert body["serverUrl"] == body["server_url"] == livekit_server.url
    assert body["room_name"] == body["roomName"] == room
    assert body["participant_name"] == "simulated_user"
    assert body["participant_identity"].startswith("simulated_user-")
    assert body["agent_name"] == "test-agent"
    # a new room: dispatched with the room in one call, whose answer names no dispatch id
    assert "dispatch_id" not in body

    # ...and the platform's own reading of it (the kit's one response parser) accepts it.
    parsed = parse_token_response(resp.status_code, resp.headers["content-type"], resp.content)
    assert (parsed.token, parsed.server_url, parsed.room_name) == (token, livekit_server.url, room)
    assert parsed.warnings == ()

    claims = api.TokenVerifier(livekit_server.api_key, livekit_server.api_secret).verify(token)
    assert claims.identity == body["participant_identity"]
    assert claims.name == "simulated_user"
    assert claims.video == api.VideoGrants(
        room_join=True, room=room, can_publish=True, can_subscribe=True, can_publish_data=True
    )
    assert claims.room_config is None  # api mode: the dispatch went through the server API

    payload = jwt.decode(token, livekit_server.api_secret, algorithms=["HS256"])
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert payload["iss"] == livekit_server.api_key
    assert before + 900 - 5 <= payload["exp"] <= int(time.time()) + 900 + 5
    # Nothing admin, nothing but the one room.
    assert set(payload["video"]) == {
        "roomJoin",
        "room",
        "canPublish",
        "canSubscribe",
        "canPublishData",
    }


async def test_real_client_joins_the_room(
    token_server: TokenServer, livekit_server: LiveKitServer
) -> None:
    room_name = new_room()
    body = post(token_server, {"room_name": room_name, **PLATFORM_BODY}).json()
    room = rtc.Room()
    try:
        await asyncio.wait_for(room.connect(body["serverUrl"], body["token"]), 20)
        assert room.isconnected()
        assert room.name == room_name
        assert room.local_participant.identity == body["participant_identity"]
    finally:
        await room.disconnect()


async def test_one_dispatch_with_custom_fields_even_when_retried(
    token_server: TokenServer, livekit_server: LiveKitServer
) -> None:
    room = new_room()
    first = post(token_server, {"room_name": room, **PLATFORM_BODY})
    second = post(token_server, {"room_name": room, **PLATFORM_BODY})
    assert first.status_code == second.status_code == 200

    dispatches = named(await list_dispatches(livekit_server, room))
    assert len(dispatches) == 1
    # the first made it with the room; the retry is told which one it is
    assert "dispatch_id" not in first.json()
    assert second.json()["dispatch_id"] == dispatches[0].id
    assert dispatches[0].agent_name == "test-agent"
    meta = json.loads(dispatches[0].metadata)
    assert meta["custom"] == {"agent_variant": "sales", "language": "en"}
    assert meta["room_name"] == room
    assert meta["participant_name"] == "simulated_user"
    assert meta["participant_identity"] == first.json()["participant_identity"]
    assert meta["agent_metadata"] == '{"persona": "test"}'


async def test_concurrent_retries_still_dispatch_once(
    token_server: TokenServer, livekit_server: LiveKitServer
) -> None:
    room = new_room()
    async with httpx.AsyncClient(headers=dict(auth_headers(token_server)), timeout=30) as client:
        responses = await asyncio.gather(
            *(
                client.post(token_server.endpoint, json={"room_name": room, **PLATFORM_BODY})
                for _ in range(8)
            )
        )
    assert all(r.status_code == 200 for r in responses)
    dispatches = named(await list_dispatches(livekit_server, room))
    assert len(dispatches) == 1
    # one request created the room with the agent (no id in its answer); the rest found it
    ids = sorted((r.json().get("dispatch_id") or "") for r in responses)
    assert ids == [""] + [dispatches[0].id] * 7


async def test_a_new_room_is_created_with_the_agent_and_no_default_dispatch(
    token_server: TokenServer, livekit_server: LiveKitServer
) -> None:
    # the room is created with the agent among its own dispatches: livekit-server then launches
    # no unnamed default dispatch beside it (a CreateDispatch-made room lists both)
    room = new_room()
    answer = post(token_server, {"room_name": room, **PLATFORM_BODY})
    assert answer.status_code == 200
    dispatches = await list_dispatches(livekit_server, room)
    assert [d.agent_name for d in dispatches] == ["test-agent"]
    token_server.process.wait_log(f'"room":"{room}".*"dispatch":"created"', timeout=10)
    # one call told the endpoint it made the room, and so the dispatch: the room's metadata,
    # which livekit-server sets only when the call builds the room, is this request's
    async with api.LiveKitAPI(
        livekit_server.url, livekit_server.api_key, livekit_server.api_secret
    ) as lkapi:
        (live,) = (await lkapi.room.list_rooms(api.ListRoomsRequest(names=[room]))).rooms
    request_id = json.loads(dispatches[0].metadata)["token_request_id"]
    assert json.loads(live.metadata) == {"token_request_id": request_id}
    assert "dispatch_id" not in answer.json()


async def test_a_room_that_existed_without_the_agent_gets_it_once(
    token_server: TokenServer, livekit_server: LiveKitServer
) -> None:
    room = new_room()
    async with api.LiveKitAPI(
        livekit_server.url, livekit_server.api_key, livekit_server.api_secret
    ) as lkapi:
        await lkapi.room.create_room(api.CreateRoomRequest(name=room))
    first = post(token_server, {"room_name": room, **PLATFORM_BODY})
    second = post(token_server, {"room_name": room, **PLATFORM_BODY})
    assert first.status_code == second.status_code == 200
    assert first.json()["dispatch_id"] == second.json()["dispatch_id"]
    dispatches = named(await list_dispatches(livekit_server, room))
    assert [d.id for d in dispatches] == [first.json()["dispatch_id"]]
    assert (
        json.loads(dispatches[0].metadata)["participant_identity"]
        == (first.json()["participant_identity"])
    )


async def test_an_identical_retry_on_another_process_does_not_claim_the_dispatch(
    token_server: TokenServer,
    start_token_server: TokenServerFactory,
    livekit_server: LiveKitServer,
) -> None:
    # Same body, identity and X-Request-ID: only the endpoint's token_request_id tells the two
    # requests apart. The second process must answer with the first's dispatch as an existing one
    # (it does not follow it, nor withdraw it if its answer goes undelivered).
    other = start_token_server(
        AGENT_NAME="test-agent",
        AGENT_METADATA='{"persona": "test"}',
        TOKEN_SERVER_API_KEYS=token_server.api_key or "",
        TOKEN_SERVER_ALLOW_NO_AUTH="0",
    )
    room = new_room()
    body = {"room_name": room, "participant_identity": "caller-1", **PLATFORM_BODY}
    request_id = {"X-Request-ID": f"retry-{room}"}
    first = post(token_server, body, headers=request_id)
    second = post(other, body, headers=request_id)
    assert first.status_code == second.status_code == 200
    dispatches = named(await list_dispatches(livekit_server, room))
    assert len(dispatches) == 1
    assert second.json()["dispatch_id"] == dispatches[0].id
    token_server.process.wait_log(f'"room":"{room}".*"dispatch":"created"', timeout=10)
    other.process.wait_log(f'"room":"{room}".*"dispatch":"existing"', timeout=10)
    assert [line["dispatch"] for line in request_lines(other, room)] == ["existing"]


async def test_retry_with_same_name_does_not_kick_the_first_connection(
    token_server: TokenServer,
) -> None:
    room_name = new_room()
    first = post(token_server, {"room_name": room_name, **PLATFORM_BODY}).json()
    second = post(token_server, {"room_name": room_name, **PLATFORM_BODY}).json()
    assert first["participant_identity"] != second["participant_identity"]

    a, b = rtc.Room(), rtc.Room()
    kicked = asyncio.Event()
    a.on("disconnected", lambda *_: kicked.set())
    try:
        await a.connect(first["serverUrl"], first["token"])
        await b.connect(second["serverUrl"], second["token"])
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(kicked.wait(), 2)
        assert a.isconnected() and b.isconnected()
        assert second["participant_identity"] in a.remote_participants or await _sees(
            a, second["participant_identity"]
        )
    finally:
        await b.disconnect()
        await a.disconnect()


async def _sees(room: rtc.Room, identity: str) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if identity in room.remote_participants:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_explicit_identity_is_kept(token_server: TokenServer) -> None:
    body = post(token_server, {"room_name": new_room(), "participant_identity": "caller-7"}).json()
    assert body["participant_identity"] == "caller-7"


def test_missing_room_name_gets_a_generated_one(token_server: TokenServer) -> None:
    a = post(token_server, {"participant_name": "simulated_user"}).json()
    b = post(token_server, {}).json()
    assert a["room_name"] and b["room_name"] and a["room_name"] != b["room_name"]
    assert b["participant_name"] == "user"


async def test_standard_shape_with_allowed_agent_and_its_metadata(
    start_token_server: TokenServerFactory, livekit_server: LiveKitServer
) -> None:
    server = start_token_server(AGENT_NAME="main-agent", ALLOWED_AGENT_NAMES="alt-agent")
    room = new_room()
    resp = post(
        server,
        {
            "roomName": room,
            "participantName": "Ann",
            "participantAttributes": {"tier": "gold"},
            "roomConfig": {"agents": [{"agentName": "alt-agent", "metadata": "{'role': 'x'}"}]},
        },
    )
    assert resp.status_code == 200, resp.text
    claims = api.TokenVerifier(livekit_server.api_key, livekit_server.api_secret).verify(
        resp.json()["participantToken"]
    )
    assert claims.attributes == {"tier": "gold"}
    dispatches = named(await list_dispatches(livekit_server, room))
    assert [d.agent_name for d in dispatches] == ["alt-agent"]
    assert json.loads(dispatches[0].metadata)["requested_agent_metadata"] == "{'role': 'x'}"

    refused = post(server, {"room_config": {"agents": [{"agent_name": "intruder"}]}})
    assert refused.status_code == 403
    assert refused.json()["error"] == "agent_not_allowed"
    assert "token" not in refused.json()


async def test_token_mode_puts_the_dispatch_in_the_token(
    start_token_server: TokenServerFactory, livekit_server: LiveKitServer
) -> None:
    server = start_token_server(AGENT_NAME="tok-agent", DISPATCH_MODE="token")
    room_name = new_room()
    body = post(server, {"room_name": room_name, **PLATFORM_BODY}).json()
    assert "dispatch_id" not in body
    claims = api.TokenVerifier(livekit_server.api_key, livekit_server.api_secret).verify(
        body["token"]
    )
    assert claims.room_config is not None
    agent = claims.room_config.agents[0]
    assert agent.agent_name == "tok-agent"
    assert json.loads(agent.metadata)["custom"]["agent_variant"] == "sales"

    # The join that creates the room applies the token's dispatch.
    room = rtc.Room()
    try:
        await room.connect(body["serverUrl"], body["token"])
        dispatches = named(await list_dispatches(livekit_server, room_name))
        assert [d.agent_name for d in dispatches] == ["tok-agent"]
    finally:
        await room.disconnect()


async def test_none_mode_dispatches_nothing(
    start_token_server: TokenServerFactory, livekit_server: LiveKitServer
) -> None:
    server = start_token_server(DISPATCH_MODE="none", AGENT_NAME="")
    room_name = new_room()
    body = post(server, {"room_name": room_name, **PLATFORM_BODY}).json()
    assert "dispatch_id" not in body and "agent_name" not in body
    room = rtc.Room()
    try:
        await room.connect(body["serverUrl"], body["token"])
        assert named(await list_dispatches(livekit_server, room_name)) == []
    finally:
        await room.disconnect()


def test_public_url_is_what_callers_get(start_token_server: TokenServerFactory) -> None:
    server = start_token_server(AGENT_NAME="a", LIVEKIT_PUBLIC_URL="wss://lk.example.com")
    body = post(server, {"room_name": new_room()}).json()
    assert body["serverUrl"] == body["server_url"] == "wss://lk.example.com"


# --- auth -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer test-key-2"},
        {"X-API-Key": "test-key-1"},
        {"authorization": "bearer test-key-1"},
    ],
)
def test_accepted_auth_headers(token_server: TokenServer, headers: dict[str, str]) -> None:
    resp = httpx.post(token_server.endpoint, json={"room_name": new_room()}, headers=headers)
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"X-API-Key": "test-key-1x"},
        {"Authorization": "Basic dGVzdC1rZXktMQ=="},
        {"Authorization": "Bearer"},
    ],
)
def test_rejected_auth(token_server: TokenServer, headers: dict[str, str]) -> None:
    resp = httpx.post(token_server.endpoint, json={"room_name": new_room()}, headers=headers)
    assert resp.status_code == 401
    assert resp.json()["error"] == "unauthorized"
    assert "token" not in resp.json()
    assert resp.headers["www-authenticate"] == "Bearer"


# --- bad input --------------------------------------------------------------------------------

BAD_INPUTS: list[tuple[str, dict[str, Any], int, str]] = [
    ("not json", {"content": b"{room_name:"}, 400, "invalid_json"),
    ("not an object", {"json": ["room"]}, 400, "invalid_body"),
    ("wrong type", {"json": {"room_name": 42}}, 400, "invalid_field"),
    ("empty room", {"json": {"room_name": ""}}, 400, "invalid_room_name"),
    ("long room", {"json": {"room_name": "r" * 300}}, 400, "invalid_room_name"),
    ("control chars", {"json": {"room_name": "a\u0007b"}}, 400, "invalid_room_name"),
    ("empty participant", {"json": {"participant_name": ""}}, 400, "invalid_participant_name"),
    (
        "long participant",
        {"json": {"participant_name": "p" * 200}},
        400,
        "invalid_participant_name",
    ),
    (
        "participant ctrl",
        {"json": {"participant_name": "sim\r\nuser"}},
        400,
        "invalid_participant_name",
    ),
    ("too large", {"json": {"room_name": "r", "blob": "x" * 70_000}}, 413, "body_too_large"),
]


@pytest.mark.parametrize(
    ("case", "kwargs", "status", "code"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_gets_a_json_error_and_no_token(
    token_server: TokenServer, case: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    resp = httpx.post(token_server.endpoint, headers=dict(auth_headers(token_server)), **kwargs)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"] == code
    assert body["detail"]
    assert set(body) == {"error", "detail"}
    # ...and the server keeps serving.
    assert post(token_server, {"room_name": new_room()}).status_code == 200


def test_oversized_body_without_content_length_is_refused(token_server: TokenServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"room_name": "r", "blob": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    resp = httpx.post(
        token_server.endpoint, headers=dict(auth_headers(token_server)), content=chunks()
    )
    assert resp.status_code == 413
    assert resp.json()["error"] == "body_too_large"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_wrong_method(token_server: TokenServer, method: str) -> None:
    resp = httpx.request(method, token_server.endpoint, headers=dict(auth_headers(token_server)))
    assert resp.status_code == 405
    assert resp.json()["error"] == "method_not_allowed"


def test_unknown_path_is_json_404(token_server: TokenServer) -> None:
    resp = httpx.post(token_server.base_url + "/token")
    assert resp.status_code == 404
    assert resp.json()["error"] == "not_found"


def test_request_log_has_fields_and_no_secrets(
    token_server: TokenServer, livekit_server: LiveKitServer
) -> None:
    room = new_room()
    resp = post(token_server, {"room_name": room}, headers={"X-Request-ID": "req-abc-123"})
    assert resp.headers["x-request-id"] == "req-abc-123"
    refused = httpx.post(
        token_server.endpoint,
        json={},
        headers={"Authorization": "Bearer wrong-key-zzz", "X-Request-ID": "req-refused-456"},
    )
    assert refused.status_code == 401
    # both requests' own lines must be written before the log is searched for secrets
    token_server.process.wait_until(
        lambda: all(
            f'"request_id":"{rid}"' in token_server.process.log_text()
            for rid in ("req-abc-123", "req-refused-456")
        ),
        10,
        "logging both requests",
    )
    log = token_server.process.log_text()
    refused_line = next(x for x in log.splitlines() if '"request_id":"req-refused-456"' in x)
    assert '"status":401' in refused_line and '"outcome":"unauthorized"' in refused_line
    line = next(x for x in log.splitlines() if '"request_id":"req-abc-123"' in x)
    record = json.loads(line[line.index("{") :])
    assert record["room"] == room
    assert record["status"] == 200
    assert record["outcome"] == "ok"
    assert record["latency_ms"] >= 0
    assert record["dispatch"] == "created"
    for secret in (
        "test-key-1",
        "test-key-2",
        "wrong-key-zzz",
        livekit_server.api_secret,
        resp.json()["token"],
    ):
        assert secret not in log


# --- LiveKit down, refusing, slow -------------------------------------------------------------


def test_readyz_and_dispatch_fail_when_livekit_stops(tmp_path: Any) -> None:
    with LocalStack(log_dir=tmp_path) as stack:
        livekit = stack.start_livekit()
        server = stack.start_token_server(livekit, env={"AGENT_NAME": "a"})
        assert httpx.get(server.base_url + "/readyz").status_code == 200
        assert httpx.get(server.base_url + "/healthz").json() == {"status": "ok"}

        stack.stop(livekit.process)
        ready = httpx.get(server.base_url + "/readyz", timeout=30)
        assert ready.status_code == 503
        assert ready.json()["error"] == "livekit_unavailable"
        resp = httpx.post(server.endpoint, json={"room_name": new_room()}, timeout=30)
        assert resp.status_code == 502
        assert resp.json()["error"] == "livekit_unreachable"
        assert "token" not in resp.json()
        assert httpx.get(server.base_url + "/healthz").status_code == 200


def test_wrong_credentials_are_a_refused_dispatch(
    start_token_server: TokenServerFactory, livekit_server: LiveKitServer
) -> None:
    server = start_token_server(AGENT_NAME="a", LIVEKIT_API_SECRET="not-the-real-secret-" * 2)
    resp = post(server, {"room_name": new_room()})
    assert resp.status_code == 502
    assert resp.json()["error"] == "dispatch_refused"
    assert httpx.get(server.base_url + "/readyz").status_code == 503


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A TCP port that accepts connections and never answers: a LiveKit that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"ws://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_slow_livekit_answers_within_the_timeout(
    start_token_server: TokenServerFactory, black_hole: str
) -> None:
    server = start_token_server(
        AGENT_NAME="a", LIVEKIT_URL=black_hole, DISPATCH_TIMEOUT_SECONDS="1"
    )
    started = time.monotonic()
    resp = post(server, {"room_name": new_room()})
    elapsed = time.monotonic() - started
    assert resp.status_code == 504
    assert resp.json()["error"] == "livekit_timeout"
    assert elapsed < 10  # generous: the configured bound is 1 s


async def test_several_workers_serve_and_still_dispatch_once(
    start_token_server: TokenServerFactory, livekit_server: LiveKitServer
) -> None:
    server = start_token_server(AGENT_NAME="multi-agent", TOKEN_SERVER_WORKERS="2")
    room = new_room()
    body = {"room_name": room, **PLATFORM_BODY}

    def request_records() -> list[dict[str, Any]]:
        lines = server.process.log_text().splitlines()
        return [
            json.loads(line[line.index("{") :])
            for line in lines
            if '"event":"request"' in line and f'"room":"{room}"' in line
        ]

    async def post_once() -> None:
        # a client of its own: a new connection, which either worker process may accept
        async with httpx.AsyncClient(timeout=30) as client:
            resp = await client.post(server.endpoint, json=body, headers=auth_headers(server))
        assert resp.status_code == 200, resp.text
        assert resp.json()["agent_name"] == "multi-agent"

    # The first request alone: two *simultaneous* first requests landing on different workers
    # could both dispatch (a documented limit). Then retries, a few at once, until two processes
    # have answered for this room: the kernel may hand many connections in a row to one worker,
    # so a fixed count proves nothing. Bounded: 400 requests or 60 s.
    await post_once()
    sent = 1
    deadline = time.monotonic() + 60
    while sent < 400 and time.monotonic() < deadline:
        await asyncio.gather(*(post_once() for _ in range(4)))
        sent += 4
        if len({r["pid"] for r in request_records()}) >= 2:
            break

    # each request's log line is written just after its answer is sent
    await asyncio.to_thread(
        server.process.wait_until,
        lambda: len(request_records()) >= sent,
        10,
        f"logging {sent} requests",
    )
    records = request_records()
    assert len(records) == sent
    pids = {r["pid"] for r in records}
    assert len(pids) >= 2, f"one process answered all {sent} requests: {pids}"
    assert server.process.pid not in pids  # the workers answer, not their supervisor
    # Exactly one of them created a dispatch, every other request (either process) found it (no
    # worker runs under this name, so the one that created it keeps adding dispatches beside it
    # until one is taken: their ids differ).
    outcomes = [r.get("dispatch") for r in records]
    assert outcomes.count("created") == 1, outcomes
    assert outcomes.count("existing") == sent - 1, outcomes
    assert named(await list_dispatches(livekit_server, room))
