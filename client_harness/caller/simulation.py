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
from dataclasses import dataclass
from pathlib import Path

import httpx

from client_harness.caller.agent_join import join_and_wait_for_agent, non_agents_before_the_agent
from client_harness.caller.call_room import AGENT_NAME_ATTR, CallRoom, Clock, kind_name
from client_harness.caller.claims import check_claims
from client_harness.caller.conversation import Conversation
from client_harness.caller.speech import Speech
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
    agent_left_early,
    agent_never_spoke,
    caller_connection_dropped,
    conversation_error,
    token_refusal_causes,
    turns_unanswered,
)
from client_harness.measurement.metrics import (
    END_AGENT_LEFT,
    END_CALLER_DISCONNECTED,
    END_COMPLETED,
    END_MAX_DURATION,
    STEP_AGENT_JOIN,
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
    result.started_at = clock.zero_unix

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
        result.warnings.extend(non_agents_before_the_agent(room))

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
    await _talk_until_the_call_ends(conversation, room, scenario, result, clock)
    if options.mode == "voice":
        await conversation.finish_voice()
    else:
        conversation.finish_text()
    _measure(room, scenario, result, options, clock.now())
    if not result.failed_step:
        _judge(scenario, result, room.connection_lost_at)


async def _talk_until_the_call_ends(
    conversation: Conversation,
    room: CallRoom,
    scenario: Scenario,
    result: SimulationResult,
    clock: Clock,
) -> None:
    """Run the scenario until it completes, the agent leaves, the caller's connection drops or
    the maximum duration passes; record which (`end_reason`) or the conversation's error."""
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
    # when the scenario was said to its end (not cut short by the agent leaving or an error)
    said_all = talk in done and not talk.exception() and len(result.turns) == len(scenario.turns)
    talk_ended_at = clock.now() if said_all else None
    for task in (talk, left, dropped):
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    # The caller's own connection going down wins over everything it makes look like the
    # agent's doing (the agent "leaving", unanswered turns, an error publishing), unless the
    # scenario had been said to its end first.
    lost = room.caller_connection_lost()
    lost_at = room.connection_lost_at
    if lost is not None and (talk_ended_at is None or lost_at is None or lost_at <= talk_ended_at):
        result.end_reason = END_CALLER_DISCONNECTED
        result.caller_disconnect_reason = lost
    elif talk in done and (exc := talk.exception()) is not None:
        result.fail_with(STEP_CONVERSATION, conversation_error(exc))
    elif room.agent_left.is_set() and len(result.turns) < len(scenario.turns):
        result.end_reason = END_AGENT_LEFT  # the conversation stopped early because of it
    elif talk in done:
        result.end_reason = END_COMPLETED
    elif left in done:
        result.end_reason = END_AGENT_LEFT
    else:
        result.end_reason = END_MAX_DURATION


def _measure(
    room: CallRoom, scenario: Scenario, result: SimulationResult, options: RunOptions, end: float
) -> None:
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


def _judge(scenario: Scenario, result: SimulationResult, lost_at: float | None) -> None:
    """The verdict on a conversation that ran: passed, or failed with its diagnosed cause."""
    turns = f"{len(result.turns)} of {len(scenario.turns)} caller turns"
    unanswered = [t.index for t in result.turns if not t.answered]
    waited = scenario.response_timeout_seconds
    if result.end_reason == END_MAX_DURATION:
        result.warnings.append(
            f"ended at max_duration_seconds={scenario.max_duration_seconds:g} after {turns}"
        )
        result.ok = True
    elif result.end_reason == END_AGENT_LEFT and len(result.turns) < len(scenario.turns):
        result.fail_with(STEP_CONVERSATION, agent_left_early(turns))
    elif result.end_reason == END_CALLER_DISCONNECTED:
        cause = caller_connection_dropped(turns, result.caller_disconnect_reason, lost_at)
        result.fail_with(STEP_CONVERSATION, cause)
    elif unanswered and not result.agent_utterances:
        result.fail_with(STEP_CONVERSATION, agent_never_spoke(result.agent_identity, turns, waited))
    elif unanswered:
        result.fail_with(STEP_CONVERSATION, turns_unanswered(unanswered, waited))
    else:
        result.ok = True
