"""Each verdict the harness can reach, provoked for real, and the cause it names (issue 10).

Real components only: the session's livekit-server, the real token server, a real sample-agent
worker (text-only: it joins, answers lk.chat on lk.transcription, and publishes no audio), and
real `livekit.rtc` participants for the faults no real agent produces on demand:

- an agent that leaves after two answers: an rtc participant whose token LiveKit makes an agent
  (`kind: agent`, `lk.agent.name`), answering on lk.transcription like the sample agent does;
- a participant posing as the agent (an agent-like identity and name, not an agent);
- a token endpoint minting real tokens with the server's key pair, but for the wrong room,
  expired, or without roomJoin.

The faults that need the room name the harness invents are put in place by a token endpoint
running in this test's loop: it sees the request's room_name, sets the fault up in that room,
then forwards the request to the real token server and hands its answer back unchanged.

The one fault inside the harness itself (its speech synthesis raising mid-conversation) is
injected by monkeypatching the harness's own `Speech.synthesize`.

Waits are short (no agent: 3 s; replies 2-10 s; a 6 s maximum duration), so the file runs in
about a minute on 2 cores, also with both busy; every test leaves its rooms, and the module's
worker and token servers are stopped when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from livekit import api, rtc
from livekit.api.twirp_client import ServerError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from client_harness.caller.runner import run_many
from client_harness.caller.simulation import RunOptions
from client_harness.caller.speech import Speech
from client_harness.commands.check import FAIL, PASS, SKIP, STEPS, CheckOptions, run_check
from client_harness.config import HarnessConfig, stack_config
from client_harness.measurement.diagnosis import (
    AGENT_LEFT_EARLY,
    AGENT_NEVER_SPOKE,
    CONVERSATION_ERROR,
    NO_DISPATCH,
    NON_AGENT_JOINED,
)
from client_harness.measurement.metrics import (
    END_AGENT_LEFT,
    END_FAILED,
    END_MAX_DURATION,
    STEP_AGENT_JOIN,
    STEP_CONVERSATION,
    SimulationResult,
)
from client_harness.scenario import Scenario, Turn
from local_stack import AgentWorker, LiveKitServer, LocalStack, TokenServer
from tests.conftest import TokenServerFactory, auth_headers

pytestmark = pytest.mark.e2e

VERDICT_AGENT = "verdicts-text-agent"
TRANSCRIPTION_TOPIC = "lk.transcription"
CHAT_TOPIC = "lk.chat"


# --- the real components ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def text_agent(stack: LocalStack, livekit_server: LiveKitServer) -> Iterator[AgentWorker]:
    """A real sample-agent worker, text-only: it joins, greets and answers chat on
    lk.transcription, and never publishes audio. Loads no speech models (cheap on 2 cores)."""
    worker = stack.start_agent(
        livekit_server,
        VERDICT_AGENT,
        env={
            "AGENT_PROVIDER": "offline",
            "AGENT_TEXT_ONLY": "1",
            "AGENT_IDLE_PROCESSES": "2",
            "AGENT_MAX_CALLS": "3",
        },
    )
    yield worker
    stack.stop(worker.process)


@pytest.fixture(scope="module")
def dispatching_server(
    stack: LocalStack, start_token_server: TokenServerFactory, text_agent: AgentWorker
) -> Iterator[TokenServer]:
    """The real token endpoint, dispatching the text agent into every room it answers for."""
    server = start_token_server(AGENT_NAME=VERDICT_AGENT, DISPATCH_MODE="api")
    yield server
    stack.stop(server.process)


@pytest.fixture(scope="module")
def silent_server(
    stack: LocalStack, start_token_server: TokenServerFactory
) -> Iterator[TokenServer]:
    """The real token endpoint, dispatching nothing (DISPATCH_MODE=none): no real agent comes."""
    server = start_token_server(AGENT_NAME=VERDICT_AGENT, DISPATCH_MODE="none")
    yield server
    stack.stop(server.process)


# --- a token endpoint in this test's loop -------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A token endpoint's address, as `stack_config` takes it."""

    endpoint: str
    api_key: str | None = None


class _InLoopServer(uvicorn.Server):
    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()  # leave Ctrl-C and pytest-timeout's signals to pytest


@contextlib.asynccontextmanager
async def local_endpoint(
    answer: Callable[[Request], Awaitable[Response]],
) -> AsyncIterator[Endpoint]:
    """Serve `answer` as POST /livekit/token on a free loopback port, in this event loop."""
    app = Starlette(routes=[Route("/livekit/token", answer, methods=["POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = _InLoopServer(uvicorn.Config(app, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                assert not serving.done(), "the test's token endpoint did not start"
                await asyncio.sleep(0.01)
        yield Endpoint(f"http://127.0.0.1:{port}/livekit/token")
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
        sock.close()


def forwarding(upstream: TokenServer, before: Callable[[str], Awaitable[None]]) -> Any:
    """An endpoint that runs `before(room_name)` and then answers exactly as `upstream` does."""

    async def answer(request: Request) -> Response:
        body = await request.json()
        await before(str(body["room_name"]))
        async with httpx.AsyncClient(timeout=30) as client:
            upstream_answer = await client.post(
                upstream.endpoint, json=body, headers=dict(auth_headers(upstream))
            )
        return Response(
            upstream_answer.content,
            upstream_answer.status_code,
            media_type=upstream_answer.headers.get("content-type"),
        )

    return answer


# --- real rtc participants ----------------------------------------------------------------------


def mint(
    livekit: LiveKitServer,
    room: str,
    identity: str,
    *,
    name: str = "",
    kind: Any = None,
    attributes: dict[str, str] | None = None,
) -> str:
    """A real token for `room`, signed with the server's key pair."""
    token = (
        api.AccessToken(livekit.api_key, livekit.api_secret)
        .with_identity(identity)
        .with_name(name or identity)
        .with_grants(api.VideoGrants(room_join=True, room=room))
    )
    if kind is not None:
        token = token.with_kind(kind)
    if attributes:
        token = token.with_attributes(attributes)
    return token.to_jwt()


class Impostor:
    """A participant posing as the agent: an agent-like identity and the agent's name, but a
    plain participant to LiveKit (no agent kind, no lk.agent.* attributes). `kind="egress"`
    makes it one the real sample agent does not take for its caller (livekit-agents waits for a
    standard, SIP or connector participant), so the real agent still talks to the caller."""

    identity = "agent-AJ_impostor"

    def __init__(self, livekit: LiveKitServer, kind: Any = None) -> None:
        self.livekit = livekit
        self.kind = kind
        self.room: rtc.Room | None = None
        self.saw_caller = asyncio.Event()

    async def join(self, room_name: str) -> None:
        self.room = rtc.Room()
        self.room.on("participant_connected", self._on_participant)
        token = mint(self.livekit, room_name, self.identity, name=VERDICT_AGENT, kind=self.kind)
        await self.room.connect(self.livekit.url, token)

    def _on_participant(self, participant: rtc.RemoteParticipant) -> None:
        if participant.kind != rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            self.saw_caller.set()

    async def close(self) -> None:
        if self.room is not None:
            await self.room.disconnect()


class LeavingAgent:
    """An agent that hangs up after `replies` answers: a real rtc participant that LiveKit
    lists as an agent (its token has `kind: agent` and `lk.agent.name`). Like the sample agent
    in text mode it greets the caller and answers each lk.chat message on lk.transcription; after
    its last answer it leaves the room."""

    identity = "agent-AJ_leaves-early"

    def __init__(self, livekit: LiveKitServer, replies: int) -> None:
        self.livekit = livekit
        self.replies = replies
        self.room = rtc.Room()
        self.heard: list[str] = []
        self.left = asyncio.Event()
        self._greeted = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def join(self, room_name: str) -> None:
        self.room.on("participant_connected", lambda _p: self._spawn(self._greet()))
        self.room.register_text_stream_handler(CHAT_TOPIC, self._on_chat)
        token = mint(
            self.livekit,
            room_name,
            self.identity,
            kind="agent",
            attributes={"lk.agent.name": "leaves-early", "lk.agent.state": "listening"},
        )
        await self.room.connect(self.livekit.url, token)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _say(self, text: str) -> None:
        await self.room.local_participant.send_text(text, topic=TRANSCRIPTION_TOPIC)

    async def _greet(self) -> None:
        if not self._greeted:
            self._greeted = True
            await self._say("Hello, this is the agent that hangs up. How can I help?")

    def _on_chat(self, reader: rtc.TextStreamReader, _sender: str) -> None:
        self._spawn(self._answer(reader))

    async def _answer(self, reader: rtc.TextStreamReader) -> None:
        text = await reader.read_all()
        if self.left.is_set():
            return
        self.heard.append(text)
        await self._say(f"Reply {len(self.heard)}: yes, we are open on Friday.")
        if len(self.heard) == self.replies:
            self.left.set()
            await self.room.disconnect()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.room.disconnect()


# --- running the harness ------------------------------------------------------------------------


async def simulate(
    config: HarnessConfig, scenario: Scenario, mode: str = "text", within: float = 90
) -> SimulationResult:
    """One simulation through the harness's own runner, bounded: a verdict must not hang."""
    options = RunOptions(mode=mode, transcribe=False)
    async with asyncio.timeout(within):
        run = await run_many(config, scenario, options, count=1, concurrency=1)
    return run.results[0]


async def simulate_with(
    participant: LeavingAgent | Impostor,
    upstream: TokenServer,
    livekit: LiveKitServer,
    scenario: Scenario,
    **fields: object,
) -> SimulationResult:
    """A simulation whose token endpoint first puts `participant` into the requested room, then
    answers as `upstream` does; `participant` leaves when it is over."""
    try:
        async with local_endpoint(forwarding(upstream, participant.join)) as endpoint:
            return await simulate(stack_config(endpoint, livekit, **fields), scenario)
    finally:
        await participant.close()


async def participants_of(livekit: LiveKitServer, room: str) -> list[api.ParticipantInfo]:
    async with api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as lkapi:
        try:
            listing = await lkapi.room.list_participants(api.ListParticipantsRequest(room=room))
        except ServerError as exc:  # the room is gone with its last participant
            if exc.status == 404:
                return []
            raise
    return list(listing.participants)


async def wait_until_left(livekit: LiveKitServer, room: str, identity_prefix: str) -> None:
    """Until nobody whose identity starts with `identity_prefix` is in `room` (10 s at most)."""
    for _ in range(50):
        present = [p.identity for p in await participants_of(livekit, room)]
        if not any(identity.startswith(identity_prefix) for identity in present):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{identity_prefix}* still in room {room}: {present}")


def questions(count: int, expect: tuple[str, ...] = ()) -> tuple[Turn, ...]:
    return tuple(
        Turn(f"Question {i}: are you open on Friday?", expect) for i in range(1, count + 1)
    )


# --- a. the agent leaves ------------------------------------------------------------------------


async def test_agent_leaving_after_two_answers_is_agent_left(
    livekit_server: LiveKitServer, silent_server: TokenServer
) -> None:
    agent = LeavingAgent(livekit_server, replies=2)
    scenario = Scenario(
        name="agent-hangs-up",
        turns=questions(4, expect=("reply",)),
        greeting_wait_seconds=10,
        response_timeout_seconds=10,
        # time enough to see the agent go before the third turn would be said, even under load
        pause_before_reply_seconds=1.5,
        max_duration_seconds=60,
    )
    before = time.time()
    result = await simulate_with(
        agent, silent_server, livekit_server, scenario, agent_join_timeout=10
    )
    # the timeline's zero on the wall clock, to line the report up with other logs
    assert result.started_at is not None and before <= result.started_at <= time.time()

    # The fault happened as scripted: two answers, then the agent left.
    assert agent.left.is_set() and len(agent.heard) == 2, agent.heard
    assert result.agent_identity == agent.identity and result.agent_kind == "agent"

    # The verdict: the agent left, after the two turns it answered, and that is the cause.
    assert result.end_reason == END_AGENT_LEFT, (result.end_reason, result.error, result.cause)
    assert not result.ok and result.failed_step == STEP_CONVERSATION
    assert result.cause == AGENT_LEFT_EARLY, result.diagnosis
    assert "the agent left after 2 of 4 caller turns" in (result.error or ""), result.error
    assert [t.caller_text for t in result.turns] == [t.say for t in scenario.turns[:2]]
    assert [t.agent_text for t in result.turns] == [
        "Reply 1: yes, we are open on Friday.",
        "Reply 2: yes, we are open on Friday.",
    ]
    assert all(t.expectation_met for t in result.turns)


# --- b. a participant posing as the agent -------------------------------------------------------


async def test_a_participant_posing_as_the_agent_is_not_taken_for_it(
    livekit_server: LiveKitServer, silent_server: TokenServer
) -> None:
    """Nothing dispatched: the only other participant is a plain one with an agent's identity.
    The harness must keep waiting for an agent and fail at agent_join, naming the missing
    dispatch, not hold the conversation with the impostor."""
    impostor = Impostor(livekit_server)
    scenario = Scenario(
        name="impostor-only",
        turns=questions(1),
        greeting_wait_seconds=2,
        response_timeout_seconds=2,
        max_duration_seconds=30,
    )
    result = await simulate_with(
        impostor, silent_server, livekit_server, scenario, agent_join_timeout=3
    )
    # the impostor really was in the room when the caller came (the caller waited 3 s there)
    assert impostor.saw_caller.is_set()

    assert result.agent_identity != Impostor.identity, (
        "the harness took a plain participant for the agent",
        result.agent_identity,
        result.agent_kind,
        result.warnings,
    )
    assert not result.ok and result.failed_step == STEP_AGENT_JOIN, (
        result.failed_step,
        result.error,
    )
    assert "within 3 s" in (result.error or "")
    keys = [c.key for c in result.causes]
    assert NO_DISPATCH in keys and NON_AGENT_JOINED in keys, result.diagnosis
    assert Impostor.identity in result.causes[keys.index(NON_AGENT_JOINED)].evidence


async def test_the_real_agent_is_the_one_talked_to_when_an_impostor_came_first(
    livekit_server: LiveKitServer, dispatching_server: TokenServer
) -> None:
    """The impostor is in the room before the real agent is even dispatched; the harness must
    wait for the real agent and hold the conversation with it."""
    impostor = Impostor(livekit_server, kind="egress")
    scenario = Scenario(
        name="impostor-then-agent",
        turns=(Turn("What time do you open on Friday?"),),
        greeting_wait_seconds=15,
        response_timeout_seconds=10,
        max_duration_seconds=60,
    )
    result = await simulate_with(
        impostor,
        dispatching_server,
        livekit_server,
        scenario,
        livekit_agent_name=VERDICT_AGENT,
        agent_join_timeout=30,
    )

    assert result.agent_identity != Impostor.identity, (
        "the harness took a plain participant for the agent",
        result.agent_identity,
        result.agent_kind,
        result.warnings,
    )
    assert result.agent_kind == "agent" and result.agent_name == VERDICT_AGENT
    assert result.ok, (result.failed_step, result.error, result.diagnosis)
    assert result.turns[0].answered and result.turns[0].agent_text
    # ...and says the platform, which takes the first participant to join, would not have
    before = [w for w in result.warnings if "not an agent" in w]
    assert len(before) == 1 and before[0].startswith(f"{Impostor.identity} (egress"), before


# --- c. the maximum duration --------------------------------------------------------------------


async def test_reaching_the_maximum_duration_is_max_duration(
    livekit_server: LiveKitServer, dispatching_server: TokenServer
) -> None:
    """A real agent answering every turn, a scenario too long for its maximum duration."""
    scenario = Scenario(
        name="too-long",
        turns=questions(10),
        greeting_wait_seconds=20,
        response_timeout_seconds=10,
        pause_before_reply_seconds=1.0,
        max_duration_seconds=6,
    )
    config = stack_config(
        dispatching_server,
        livekit_server,
        livekit_agent_name=VERDICT_AGENT,
        agent_join_timeout=30,
    )
    result = await simulate(config, scenario)

    assert result.end_reason == END_MAX_DURATION, (result.end_reason, result.error)
    assert result.ok and result.failed_step is None, (result.failed_step, result.error)
    assert result.agent_kind == "agent" and result.agent_name == VERDICT_AGENT
    assert len(result.turns) < len(scenario.turns)
    assert (
        f"ended at max_duration_seconds=6 after {len(result.turns)} of 10 caller turns"
        in result.warnings
    ), result.warnings
    # cut at the maximum, not long after it (joining comes before the conversation's clock)
    assert result.duration_s is not None and result.duration_s < 6 + 30


# --- d. the conversation raises -----------------------------------------------------------------


async def test_an_error_inside_the_conversation_fails_it_and_leaves_the_room(
    livekit_server: LiveKitServer,
    dispatching_server: TokenServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The caller's speech synthesis fails on its first turn (the harness's own code, faulted
    here): the simulation fails at the conversation step with that error, at once, and the
    caller leaves the room."""
    fault = "injected: the caller's TTS is broken"

    async def synthesize(self: Speech, text: str) -> Any:
        raise RuntimeError(fault)

    monkeypatch.setattr(Speech, "synthesize", synthesize)
    scenario = Scenario(
        name="caller-tts-breaks",
        turns=questions(2),
        greeting_wait_seconds=2,
        response_timeout_seconds=5,
        max_duration_seconds=60,
    )
    config = stack_config(
        dispatching_server, livekit_server, livekit_agent_name=VERDICT_AGENT, agent_join_timeout=30
    )
    result = await simulate(config, scenario, mode="voice", within=60)

    assert result.agent_kind == "agent", (result.failed_step, result.error)  # it got that far
    assert not result.ok and result.failed_step == STEP_CONVERSATION
    assert result.end_reason == END_FAILED
    assert f"RuntimeError: {fault}" in (result.error or ""), result.error
    assert result.cause == CONVERSATION_ERROR, result.diagnosis
    assert result.turns == []  # it broke before the first caller turn went out
    # nothing hung: two seconds of greeting wait, then the failure
    assert result.duration_s is not None and result.duration_s < 30
    # the caller left the room (the token server names callers participant_name-<suffix>)
    await wait_until_left(livekit_server, result.room_name, "simulated_user")


# --- e. check: the token's claims ---------------------------------------------------------------

WRONG_ROOM = "not-the-room-you-asked-for"


def _wrong_room(livekit: LiveKitServer, room: str) -> str:
    return mint(livekit, WRONG_ROOM, "simulated_user-wrong-room")


def _expired(livekit: LiveKitServer, room: str) -> str:
    return (
        api.AccessToken(livekit.api_key, livekit.api_secret)
        .with_identity("simulated_user-expired")
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .with_ttl(datetime.timedelta(seconds=-600))
        .to_jwt()
    )


def _no_room_join(livekit: LiveKitServer, room: str) -> str:
    return (
        api.AccessToken(livekit.api_key, livekit.api_secret)
        .with_identity("simulated_user-no-join")
        .with_grants(api.VideoGrants(room_join=False, room=room, can_subscribe=True))
        .to_jwt()
    )


@pytest.mark.parametrize(
    ("minted", "named"),
    [
        (_wrong_room, f"video grant is for room {WRONG_ROOM!r}, not the requested room"),
        (_expired, "token expired"),
        (_no_room_join, "video grant has no roomJoin: true"),
    ],
    ids=["wrong-room", "expired", "no-room-join"],
)
async def test_check_fails_the_claims_step_for_a_token_that_cannot_work(
    livekit_server: LiveKitServer, minted: Callable[[LiveKitServer, str], str], named: str
) -> None:
    """A token endpoint answering with a real token (the server's key pair) that cannot get the
    caller into the room it asked for: `check` fails at the claims and joins nothing."""
    requested: list[str] = []

    async def answer(request: Request) -> Response:
        room = str((await request.json())["room_name"])
        requested.append(room)
        token = minted(livekit_server, room)
        return JSONResponse({"token": token, "serverUrl": livekit_server.url, "room_name": room})

    async with local_endpoint(answer) as endpoint:
        config = stack_config(endpoint, livekit_server, agent_join_timeout=3)
        steps = await run_check(config, CheckOptions(audio_wait=3, connect_timeout=5))

    assert len(requested) == 1
    assert [s.step for s in steps] == list(STEPS)
    assert [s.status for s in steps[:2]] == [PASS, PASS], steps
    claims = steps[2]
    assert claims.status == FAIL, steps
    assert named in claims.detail, claims.detail
    if minted is _wrong_room:
        assert repr(requested[0]) in claims.detail  # names both rooms
    assert "requested room_name" in claims.fix
    assert [s.status for s in steps[3:]] == [SKIP] * 4, steps


# --- f. the agent joined but never spoke --------------------------------------------------------


async def test_check_reports_an_agent_that_joined_but_never_spoke(
    livekit_server: LiveKitServer, dispatching_server: TokenServer
) -> None:
    """The real text-only agent joins and publishes no audio: `check` passes the join and fails
    "agent audio heard", saying the agent published no track."""
    config = stack_config(
        dispatching_server, livekit_server, livekit_agent_name=VERDICT_AGENT, agent_join_timeout=30
    )
    steps = await run_check(config, CheckOptions(audio_wait=3))

    assert [s.step for s in steps] == list(STEPS)
    assert [s.status for s in steps[:6]] == [PASS] * 6, steps
    assert f"lk.agent.name={VERDICT_AGENT!r}" in steps[5].detail
    assert steps[6].status == FAIL
    assert steps[6].detail == "no agent speech heard (the agent published no track)"
    assert "publish an audio track" in steps[6].fix


async def test_run_reports_an_agent_that_joined_but_never_spoke(
    livekit_server: LiveKitServer, dispatching_server: TokenServer
) -> None:
    """The same silent agent in a spoken simulation: the verdict says it joined and never spoke,
    not that a turn went unanswered for a turn-detection reason."""
    scenario = Scenario(
        name="silent-agent",
        turns=questions(1),
        greeting_wait_seconds=2,
        response_timeout_seconds=3,
        max_duration_seconds=60,
    )
    config = stack_config(
        dispatching_server, livekit_server, livekit_agent_name=VERDICT_AGENT, agent_join_timeout=30
    )
    result = await simulate(config, scenario, mode="voice")

    assert result.agent_kind == "agent" and result.agent_name == VERDICT_AGENT
    assert not result.ok and result.failed_step == STEP_CONVERSATION, (
        result.failed_step,
        result.error,
    )
    assert result.cause == AGENT_NEVER_SPOKE, (result.error, result.diagnosis)
    assert (result.error or "").startswith("the agent joined but never spoke"), result.error
    assert result.agent_identity and result.agent_identity in (result.error or "")
    assert result.agent_utterances == []
    assert len(result.turns) == 1 and not result.turns[0].answered
