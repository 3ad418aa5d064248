"""One simulation, the platform's flow end to end: token → join → agent joins → conversation.

Each step is timed on the simulation's clock (zero = token request sent) and a failure records
the step it stopped at, a reason and a fix; an agent that never joins gets a diagnosis naming the
troubleshooting causes that fit what was observed (`Cause`s with stable keys). `check` joins,
waits and diagnoses through the same `join_and_wait_for_agent`, so both call the same things a
failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
from livekit import api, rtc

from client_harness.caller.call_room import AGENT_NAME_ATTR, CallRoom, Clock, kind_name
from client_harness.caller.claims import ClaimsReport, check_claims
from client_harness.caller.conversation import Conversation, Speech
from client_harness.caller.token_answer import TokenEndpointError
from client_harness.caller.token_fetch import (
    TokenResult,
    build_token_request,
    new_room_name,
    post_token_request,
    read_answer,
)
from client_harness.config import HarnessConfig
from client_harness.measurement.diagnosis import (
    Cause,
    JoinObservation,
    ListedDispatch,
    ListedJob,
    diagnose_agent_join,
    token_refusal_causes,
)
from client_harness.measurement.metrics import (
    END_AGENT_LEFT,
    END_CALLER_DISCONNECTED,
    END_COMPLETED,
    END_MAX_DURATION,
    STEP_AGENT_JOIN,
    STEP_CONNECT,
    STEP_CONVERSATION,
    STEP_TOKEN,
    SimulationResult,
    overlaps,
    silences,
)
from client_harness.measurement.recorder import Recorder
from client_harness.scenario import Scenario

log = logging.getLogger("client_harness.caller.simulation")

MODES = ("voice", "text")
AGENT_LEFT_GRACE_SECONDS = 2.0


@dataclass(frozen=True)
class RunOptions:
    mode: str = "voice"  # voice: spoken turns; text: lk.chat in, lk.transcription out
    transcribe: bool = True  # voice mode: transcribe the agent offline
    record_dir: Path | None = None  # stereo WAVs go here (None: no recording written)
    connect_timeout: float = 10.0


def api_url_for(config: HarnessConfig, server_url: str) -> str:
    """The server API URL for dispatch listing: configured, else the ws URL as http."""
    if config.livekit_api_url:
        return config.livekit_api_url
    parts = urlsplit(server_url)
    scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))


def listed_dispatch(dispatch: api.AgentDispatch) -> ListedDispatch:
    """A dispatch as the server API lists it, with what became of its jobs."""
    jobs = tuple(
        ListedJob(
            id=job.id,
            status=api.JobStatus.Name(job.state.status),
            error=job.state.error,
            participant_identity=job.state.participant_identity,
            worker_id=job.state.worker_id,
        )
        for job in dispatch.state.jobs
    )
    return ListedDispatch(agent_name=dispatch.agent_name, id=dispatch.id, jobs=jobs)


async def list_dispatches(
    config: HarnessConfig, server_url: str, room: str
) -> tuple[ListedDispatch, ...]:
    """The dispatches of `room` and their jobs, from the LiveKit server API (diagnosis only)."""
    lkapi = api.LiveKitAPI(
        api_url_for(config, server_url), config.livekit_api_key, config.livekit_api_secret
    )
    try:
        async with asyncio.timeout(5):
            dispatches = await lkapi.agent_dispatch.list_dispatch(room)
        return tuple(listed_dispatch(d) for d in dispatches)
    finally:
        await lkapi.aclose()


async def diagnose_join_timeout(
    config: HarnessConfig, token: TokenResult, claims: ClaimsReport, room_name: str
) -> list[Cause]:
    listed: tuple[ListedDispatch, ...] | None = None
    list_error = None
    if config.can_list_dispatches:
        try:
            listed = await list_dispatches(config, token.response.server_url, room_name)
        except Exception as exc:
            list_error = f"{type(exc).__name__}: {exc}"
    body = token.response.body
    video = claims.claims.get("video") if isinstance(claims.claims.get("video"), dict) else {}
    observation = JoinObservation(
        requested_room=room_name,
        waited_seconds=config.agent_join_timeout,
        configured_agent_name=config.livekit_agent_name,
        response_room=token.response.room_name,
        response_dispatch_id=str(body.get("dispatch_id") or body.get("dispatchId") or "") or None,
        response_agent_name=str(body.get("agent_name") or "") or None,
        token_room=(video or {}).get("room"),
        token_agents=tuple(str(a.get("agentName", "")) for a in claims.dispatched_agents),
        listed_dispatches=listed,
        list_error=list_error,
    )
    return diagnose_agent_join(observation)


def connect_fix(error: str, source: str) -> str:
    """The fix for a failed WebSocket/WebRTC join, from the error text."""
    lowered = error.lower()
    if "401" in lowered or "unauthorized" in lowered or "invalid token" in lowered:
        return (
            "the LiveKit server rejected the token: sign it with this server's API key and "
            "secret (the token endpoint and the server must share LIVEKIT_API_KEY/SECRET)"
        )
    if "pc connection" in lowered or "ice" in lowered:
        return (
            "signalling worked but media did not: open the server's RTC ports (UDP/TCP) and set "
            "its node IP / external IP so clients can reach it"
        )
    where = (
        "the serverUrl in your token response" if source.startswith("response") else "livekit_url"
    )
    return (
        f"check {where}: the LiveKit server must be running and reachable at that wss:// URL "
        "(include serverUrl in the token response when it differs from livekit_url)"
    )


@dataclass
class JoinOutcome:
    """How the join → wait for the agent step ended; `step` names where it failed (None: the
    agent joined)."""

    step: str | None = None
    error: str = ""
    fix: str = ""
    causes: list[Cause] = field(default_factory=list)
    agent: rtc.RemoteParticipant | None = None
    connected_at: float | None = None  # on the room's clock

    @property
    def cause(self) -> str | None:
        return self.causes[0].key if self.causes else None


async def join_and_wait_for_agent(
    config: HarnessConfig,
    token: TokenResult,
    claims: ClaimsReport,
    room: CallRoom,
    room_name: str,
    connect_timeout: float,
    on_connected: Callable[[], object] = lambda: None,
) -> JoinOutcome:
    """Join the room as the platform does, wait for the first participant, and diagnose a
    failure: `run` and `check` both go through here. `on_connected` runs once joined."""
    response = token.response
    try:
        await room.connect(response.server_url, response.token, connect_timeout)
    except (rtc.ConnectError, TimeoutError, OSError) as exc:
        text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        return JoinOutcome(
            STEP_CONNECT,
            f"could not join {response.server_url} ({response.server_url_source}): {text}",
            connect_fix(text, response.server_url_source),
        )
    outcome = JoinOutcome(connected_at=room.connected_at)
    on_connected()
    try:
        outcome.agent = await room.wait_for_agent(config.agent_join_timeout)
    except TimeoutError:
        outcome.causes = await diagnose_join_timeout(config, token, claims, room_name)
        outcome.step = STEP_AGENT_JOIN
        outcome.error = f"no agent joined room {room_name} within {config.agent_join_timeout:g} s"
        outcome.fix = outcome.causes[0].fix if outcome.causes else ""
    return outcome


async def run_simulation(
    config: HarnessConfig,
    scenario: Scenario,
    options: RunOptions,
    speech: Speech,
    client: httpx.AsyncClient,
    index: int = 0,
    connect_slots: asyncio.Semaphore | None = None,
) -> SimulationResult:
    """One simulation. `connect_slots` bounds how many simulations are between their token
    request and a completed join at once; the clock starts once a slot is held."""
    if connect_slots is None:
        return await _simulate(config, scenario, options, speech, client, index, lambda: None)
    await connect_slots.acquire()
    held = True

    def release() -> None:
        nonlocal held
        if held:
            held = False
            connect_slots.release()

    try:
        return await _simulate(config, scenario, options, speech, client, index, release)
    finally:
        release()


async def _simulate(
    config: HarnessConfig,
    scenario: Scenario,
    options: RunOptions,
    speech: Speech,
    client: httpx.AsyncClient,
    index: int,
    on_joined: Callable[[], None],
) -> SimulationResult:
    clock = Clock()
    room_name = new_room_name()
    result = SimulationResult(index, room_name, options.mode, scenario.name)

    # Step 2–4: the token request.
    request = build_token_request(config, room_name)
    started = time.perf_counter()
    answer = None
    try:
        answer = await post_token_request(client, config, request)
        response = read_answer(config, answer)
    except TokenEndpointError as exc:
        # The endpoint's own error code and detail are in exc.detail; a code that names who
        # failed (a strict-mode agent_unavailable) is also a cause, with its fix.
        if answer is not None:
            result.causes = token_refusal_causes(answer.status_code, answer.content)
        result.fail(
            STEP_TOKEN,
            f"{exc.message}: {exc.detail}" if exc.detail else exc.message,
            result.causes[0].fix if result.causes else exc.fix,
        )
        return result
    token = TokenResult(request, response, answer.status_code, time.perf_counter() - started)
    result.token_request_s = token.seconds
    result.server_url = token.response.server_url
    result.warnings.extend(token.response.warnings)
    claims = check_claims(token.response.token, room_name)
    result.warnings.extend(f"token claims: {p}" for p in claims.problems + claims.warnings)

    recorder = Recorder()
    room = CallRoom(clock, recorder, listen_audio=options.mode == "voice")
    try:
        # Step 5: join, then wait for the agent.
        connect_start = clock.now()
        outcome = await join_and_wait_for_agent(
            config, token, claims, room, room_name, options.connect_timeout, on_joined
        )
        if outcome.connected_at is not None:
            result.connect_s = outcome.connected_at - connect_start
        if outcome.step is not None or outcome.agent is None:
            result.causes = outcome.causes
            result.fail(outcome.step or STEP_AGENT_JOIN, outcome.error, outcome.fix)
            return result
        agent = outcome.agent
        connected = outcome.connected_at or connect_start
        joined = room.agent_joined_at or connected
        result.agent_join_from_token_request_s = joined
        result.agent_join_from_connect_s = max(0.0, joined - connected)
        result.agent_identity = agent.identity
        result.agent_kind = kind_name(agent.kind)
        result.agent_name = agent.attributes.get(AGENT_NAME_ATTR)
        if agent.kind != rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            result.warnings.append(
                f"the first participant to join ({agent.identity}) is a {result.agent_kind} "
                "participant, not an agent: the platform would talk to it anyway"
            )

        # Steps 6–7: the conversation.
        await _converse(room, scenario, speech, result, options, clock)
    finally:
        result.duration_s = clock.now()
        await room.close()
    if options.record_dir is not None and recorder.duration() > 0:
        path = options.record_dir / f"sim-{index:03d}-{room_name[:8]}.wav"
        result.recording = str(await asyncio.to_thread(recorder.write_wav, path))
    return result


async def _converse(
    room: CallRoom,
    scenario: Scenario,
    speech: Speech,
    result: SimulationResult,
    options: RunOptions,
    clock: Clock,
) -> None:
    conversation = Conversation(room, scenario, speech, result, options.mode)
    talk = asyncio.create_task(conversation.run())
    left = asyncio.create_task(room.agent_left.wait())
    dropped = asyncio.create_task(room.disconnected.wait())
    done, _ = await asyncio.wait(
        {talk, left, dropped},
        timeout=scenario.max_duration_seconds,
        return_when=asyncio.FIRST_COMPLETED,
    )
    if talk not in done and done:
        # The agent hanging up right after its last answer still completes the scenario: give
        # the conversation a moment to notice (its waits return as soon as the agent leaves).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(talk), AGENT_LEFT_GRACE_SECONDS)
        if talk.done():
            done = {talk}
    talk_ended_at = clock.now() if talk in done else None
    for task in (talk, left, dropped):
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    # The caller's own connection going down wins over everything it makes look like the
    # agent's doing (the agent "leaving", unanswered turns), unless the scenario was done first.
    lost = room.caller_connection_lost()
    lost_at = room.connection_lost_at
    if lost is not None and (talk_ended_at is None or lost_at is None or lost_at <= talk_ended_at):
        result.end_reason = END_CALLER_DISCONNECTED
        result.caller_disconnect_reason = lost
    elif talk in done and talk.exception() is not None:
        exc = talk.exception()
        result.fail(STEP_CONVERSATION, f"conversation failed: {type(exc).__name__}: {exc}")
    elif talk in done:
        result.end_reason = END_COMPLETED
    elif left in done:
        result.end_reason = END_AGENT_LEFT
    else:
        result.end_reason = END_MAX_DURATION

    if options.mode == "voice":
        await conversation.finish_voice()
    else:
        conversation.finish_text()
    end = clock.now()
    result.overlaps = overlaps(result.caller_utterances, result.agent_utterances)
    if options.mode == "voice":  # text segments and chat messages have no speaking time
        result.long_silences = silences(
            result.caller_utterances + result.agent_utterances,
            room.agent_joined_at or 0.0,
            end,
            scenario.long_silence_seconds,
        )
    if room.first_audio_at is not None and room.connected_at is not None:
        result.first_agent_audio_s = room.first_audio_at - room.connected_at
    if result.failed_step:
        return
    unanswered = [t.index for t in result.turns if not t.answered]
    if result.end_reason == END_MAX_DURATION:
        result.warnings.append(
            f"ended at max_duration_seconds={scenario.max_duration_seconds:g} after "
            f"{len(result.turns)} of {len(scenario.turns)} caller turns"
        )
        result.ok = True
    elif result.end_reason == END_AGENT_LEFT and len(result.turns) < len(scenario.turns):
        result.fail(
            STEP_CONVERSATION,
            f"the agent left after {len(result.turns)} of {len(scenario.turns)} caller turns",
            "check the agent's logs: it ended the call early (or crashed)",
        )
    elif result.end_reason == END_CALLER_DISCONNECTED:
        when = f" {lost_at:.1f} s into the simulation" if lost_at is not None else ""
        how = (
            "the SDK was still trying to reconnect"
            if result.caller_disconnect_reason == "reconnecting"
            else f"rtc disconnect reason {result.caller_disconnect_reason}"
        )
        result.fail(
            STEP_CONVERSATION,
            f"the caller's own connection to LiveKit dropped{when} after {len(result.turns)} of "
            f"{len(scenario.turns)} caller turns ({how})",
            "check that the LiveKit server stayed up (its log, restarts, OOM kills) and the "
            "network between the caller and it; the agent's side is not implicated",
        )
    elif unanswered:
        result.fail(
            STEP_CONVERSATION,
            f"the agent did not answer caller turn(s) {unanswered} within "
            f"{scenario.response_timeout_seconds:g} s",
            "check that the agent subscribes to the caller's audio (or lk.chat in text mode) "
            "and that its turn detection ends the caller's turn",
        )
    else:
        result.ok = True
