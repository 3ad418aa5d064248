"""The harness against the real stack: livekit-server, the token endpoint, the sample agent.

Kept lean for 2 shared cores: one spoken simulation (2 caller turns), the join-timeout and
dispatch diagnoses (3 s waits, no agent needed; `run` and `check` name the same cause), `check`
end to end, 10 concurrent simulations in text mode (lk.chat in, lk.transcription out: the agent
skips speech recognition, still speaks, and the harness does not decode audio), and a call whose
livekit-server is SIGKILLed mid-conversation (its own stack).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from livekit import api

from client_harness.caller.runner import run_many
from client_harness.caller.simulation import RunOptions
from client_harness.commands.check import FAIL, PASS, run_check
from client_harness.config import HarnessConfig, stack_config
from client_harness.measurement.diagnosis import (
    AGENT_UNAVAILABLE,
    LOG_NO_WORKER_REGISTERED,
    NO_DISPATCH,
    NO_WORKER_TOOK_JOB,
)
from client_harness.measurement.metrics import (
    END_CALLER_DISCONNECTED,
    END_COMPLETED,
    STEP_AGENT_JOIN,
    STEP_CONNECT,
    STEP_CONVERSATION,
    STEP_TOKEN,
    SimulationResult,
)
from client_harness.scenario import Scenario, Turn, scenario_from_dict
from local_stack import (
    AgentWorker,
    LiveKitServer,
    LocalStack,
    TokenServer,
)
from tests.conftest import HARNESS_LOAD_AGENT, HARNESS_LOAD_CALLS, TEST_AGENT_NAME

pytestmark = pytest.mark.e2e

ConfigFor = Callable[..., HarnessConfig]

BOOKING = scenario_from_dict(
    {
        "name": "booking-short",
        "turns": [
            {
                "say": "Hi, I would like to book a table for four people on Friday at seven.",
                "expect_any": ["table", "friday"],
            },
            {"say": "Great, thank you. Goodbye.", "expect_any": ["goodbye", "thank"]},
        ],
        "response_timeout_seconds": 20,
    }
)


async def test_spoken_simulation_completes(
    agent_worker: AgentWorker,
    token_server: TokenServer,
    harness_config_for: ConfigFor,
    tmp_path: Path,
) -> None:
    config = harness_config_for(token_server, livekit_agent_name=TEST_AGENT_NAME)
    run = await run_many(
        config, BOOKING, RunOptions(mode="voice", record_dir=tmp_path), count=1, concurrency=1
    )
    result = run.results[0]
    assert result.ok, (result.failed_step, result.error, result.diagnosis)
    assert result.end_reason == END_COMPLETED
    assert result.agent_kind == "agent" and result.agent_name == TEST_AGENT_NAME

    # Both transcripts: the caller's script, and the agent as heard and transcribed offline.
    assert [u.text for u in result.caller_utterances] == [t.say for t in BOOKING.turns]
    greeting = result.agent_utterances[0]
    assert greeting.start < result.turns[0].caller_start, "the agent greets first"
    for turn in result.turns:
        assert turn.answered and turn.expectation_met, (turn.index, turn.agent_text)
    assert result.agent_talk_s is not None and result.agent_talk_s > 2.0

    # Sane timings on one clock: each step after the previous, latencies positive and bounded.
    assert result.token_request_s is not None and 0 < result.token_request_s < 10
    assert result.connect_s is not None and 0 < result.connect_s < 15
    assert result.agent_join_from_token_request_s is not None
    assert result.agent_join_from_token_request_s >= result.token_request_s
    assert result.first_agent_audio_s is not None and 0 < result.first_agent_audio_s < 20
    for latency in result.response_latencies:
        assert 0 < latency < 20
    assert not result.overlaps

    # The stereo recording: caller left, agent right, both with speech.
    assert result.recording is not None
    with wave.open(result.recording) as wav:
        assert wav.getnchannels() == 2
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), np.int16).reshape(-1, 2)
    assert np.abs(pcm[:, 0]).max() > 1000 and np.abs(pcm[:, 1]).max() > 1000


async def test_agent_join_timeout_diagnoses_no_dispatch(
    start_token_server: Callable[..., TokenServer], harness_config_for: ConfigFor
) -> None:
    server = start_token_server(AGENT_NAME=TEST_AGENT_NAME, DISPATCH_MODE="none")
    config = harness_config_for(server, agent_join_timeout=3)
    run = await run_many(config, BOOKING, RunOptions(mode="text"), count=1, concurrency=1)
    result = run.results[0]
    assert not result.ok and result.failed_step == STEP_AGENT_JOIN
    assert "within 3 s" in (result.error or "")
    assert result.cause == NO_DISPATCH
    assert result.diagnosis[0].startswith("No agent dispatch visible")
    assert "lists no dispatch of a named agent" in result.diagnosis[0]
    assert "DISPATCH_MODE=api" in (result.fix or "")

    # Without server credentials the diagnosis rests on what the platform itself can see.
    blind = harness_config_for(
        server, agent_join_timeout=3, livekit_api_key="", livekit_api_secret=""
    )
    result = (
        await run_many(blind, BOOKING, RunOptions(mode="text"), count=1, concurrency=1)
    ).results[0]
    assert result.diagnosis[0].startswith("No agent dispatch visible")
    assert "no dispatch_id or agent_name in the token response" in result.diagnosis[0]


async def test_dispatch_without_a_running_worker(
    start_token_server: Callable[..., TokenServer],
    harness_config_for: ConfigFor,
    livekit_server: LiveKitServer,
) -> None:
    server = start_token_server(AGENT_NAME="nobody-runs-this", DISPATCH_MODE="api")
    config = harness_config_for(server, agent_join_timeout=3)
    result = (
        await run_many(config, BOOKING, RunOptions(mode="text"), count=1, concurrency=1)
    ).results[0]
    assert result.failed_step == STEP_AGENT_JOIN
    assert result.cause == NO_WORKER_TOOK_JOB, result.diagnosis
    assert "'nobody-runs-this'" in result.causes[0].evidence
    assert result.fix == result.causes[0].fix  # the cause's own fix, passed through

    # `check` calls the same thing a failure, with the same cause.
    steps = await run_check(config)
    assert [s.status for s in steps][5] == FAIL
    assert steps[5].cause == result.cause
    assert steps[5].fix == result.fix

    # The fix quotes livekit-server's own line for this case, and the server did log it (up to
    # 5 s after the dispatch while its cache of registered names is cold: CheckEnabledTimeout).
    assert LOG_NO_WORKER_REGISTERED in (result.fix or "")

    def logged() -> bool:
        return any(
            LOG_NO_WORKER_REGISTERED in line and "nobody-runs-this" in line
            for line in livekit_server.process.log_text().splitlines()
        )

    for _ in range(100):
        if logged():
            break
        await asyncio.sleep(0.1)
    assert logged()


async def test_strict_mode_refusal_names_the_cause_in_run_and_check(
    start_token_server: Callable[..., TokenServer], harness_config_for: ConfigFor
) -> None:
    server = start_token_server(
        AGENT_NAME="nobody-runs-this-strictly",
        DISPATCH_MODE="api",
        DISPATCH_STRICT="1",
        DISPATCH_STRICT_TIMEOUT_SECONDS="1",
    )
    config = harness_config_for(server, request_timeout=30)
    result = (
        await run_many(config, BOOKING, RunOptions(mode="text"), count=1, concurrency=1)
    ).results[0]
    assert result.failed_step == STEP_TOKEN
    # The endpoint's own error code and detail, then the cause with its fix.
    assert "HTTP 503" in (result.error or "") and "'agent_unavailable'" in (result.error or "")
    assert "nobody-runs-this-strictly" in (result.error or "")
    assert result.cause == AGENT_UNAVAILABLE and result.fix == result.causes[0].fix

    steps = await run_check(config)
    assert steps[1].status == FAIL and steps[1].cause == result.cause
    assert "'agent_unavailable'" in steps[1].detail


async def test_agent_name_the_endpoint_does_not_allow(
    token_server: TokenServer, harness_config_for: ConfigFor
) -> None:
    config = harness_config_for(token_server, livekit_agent_name="some-other-agent")
    result = (
        await run_many(config, BOOKING, RunOptions(mode="text"), count=1, concurrency=1)
    ).results[0]
    assert result.failed_step == STEP_TOKEN
    assert (result.error or "").startswith("Token endpoint answered HTTP 403")


async def test_server_url_pointing_nowhere_fails_at_connect(
    start_token_server: Callable[..., TokenServer],
    livekit_server: LiveKitServer,
    harness_config_for: ConfigFor,
) -> None:
    from local_stack import free_port

    nowhere = f"ws://127.0.0.1:{free_port()}"
    server = start_token_server(
        AGENT_NAME=TEST_AGENT_NAME, DISPATCH_MODE="none", LIVEKIT_PUBLIC_URL=nowhere
    )
    config = harness_config_for(server)
    result = (
        await run_many(
            config, BOOKING, RunOptions(mode="text", connect_timeout=3), count=1, concurrency=1
        )
    ).results[0]
    assert result.failed_step == STEP_CONNECT
    assert nowhere in (result.error or "") and "response field serverUrl" in (result.error or "")
    assert "serverUrl in your token response" in (result.fix or "")


async def test_check_passes_every_step_against_the_kit(
    agent_worker: AgentWorker, token_server: TokenServer, harness_config_for: ConfigFor
) -> None:
    steps = await run_check(harness_config_for(token_server, livekit_agent_name=TEST_AGENT_NAME))
    assert [(s.step, s.status) for s in steps] == [(s.step, PASS) for s in steps], steps
    assert len(steps) == 7
    assert "lk.agent.name='test-agent'" in steps[5].detail


def test_check_cli_names_the_failing_step(
    start_token_server: Callable[..., TokenServer], livekit_server: LiveKitServer
) -> None:
    server = start_token_server(AGENT_NAME=TEST_AGENT_NAME, DISPATCH_MODE="none")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "client_harness",
            "check",
            "--generate-token-endpoint",
            server.endpoint,
            "--livekit-url",
            livekit_server.url,
            "--agent-join-timeout",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    steps = [line for line in lines if line.startswith("[") and not line.startswith("[INFO]")]
    assert [line[:6] for line in steps] == ["[PASS]"] * 5 + ["[FAIL]", "[SKIP]"]
    assert "No agent dispatch visible" in steps[5]
    assert any("fix:" in line and "dispatch" in line for line in lines)
    assert lines[-1] == "check FAILED"


async def test_ten_concurrent_simulations_complete(
    harness_load_agent: AgentWorker,
    start_token_server: Callable[..., TokenServer],
    harness_config_for: ConfigFor,
) -> None:
    server = start_token_server(AGENT_NAME=HARNESS_LOAD_AGENT, DISPATCH_MODE="api")
    config = harness_config_for(
        server, livekit_agent_name=HARNESS_LOAD_AGENT, agent_join_timeout=60
    )
    # Ten agents starting at once on two cores can greet late: wait for the greeting generously,
    # or a late greeting is taken for the answer to the first turn.
    scenario = Scenario(
        name="text-booking",
        turns=BOOKING.turns,
        greeting_wait_seconds=45,
        response_timeout_seconds=30,
    )
    run = await run_many(
        config,
        scenario,
        RunOptions(mode="text"),
        count=HARNESS_LOAD_CALLS,
        concurrency=HARNESS_LOAD_CALLS,
    )
    assert len({r.room_name for r in run.results}) == HARNESS_LOAD_CALLS
    assert run.peak_concurrency == HARNESS_LOAD_CALLS  # all ten were in progress at once
    for result in run.results:
        assert result.ok, (result.index, result.failed_step, result.error, result.diagnosis)
        assert result.end_reason == END_COMPLETED
        assert _greeted_first(result), [(u.start, u.text) for u in result.agent_utterances]
        assert all(t.expectation_met for t in result.turns), [t.agent_text for t in result.turns]


def _greeted_first(result: SimulationResult) -> bool:
    return bool(result.agent_utterances) and (
        not result.turns or result.agent_utterances[0].start < result.turns[0].caller_start
    )


CALLER_DROP_AGENT = "caller-drop-agent"


async def _wait_for_a_room_with(livekit: LiveKitServer, participants: int, within: float) -> None:
    """Until some room on `livekit` holds `participants` (ListRooms' count lags: ask each room)."""
    lkapi = api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret)
    try:
        async with asyncio.timeout(within):
            while True:
                for room in (await lkapi.room.list_rooms(api.ListRoomsRequest())).rooms:
                    listing = await lkapi.room.list_participants(
                        api.ListParticipantsRequest(room=room.name)
                    )
                    if len(listing.participants) >= participants:
                        return
                await asyncio.sleep(0.2)
    finally:
        await lkapi.aclose()


async def test_livekit_server_killed_mid_call_is_the_callers_disconnect(
    own_stack: LocalStack,
) -> None:
    """When livekit-server dies, the caller's own connection drops: the end reason says so
    (with the rtc side of it), not that the agent left or failed to answer."""
    livekit = own_stack.start_livekit()
    worker = own_stack.start_agent(
        livekit,
        CALLER_DROP_AGENT,
        env={
            "AGENT_PROVIDER": "offline",
            "AGENT_TEXT_ONLY": "1",
            "AGENT_IDLE_PROCESSES": "1",
            "AGENT_MAX_CALLS": "1",
        },
    )
    server = own_stack.start_token_server(
        livekit, env={"AGENT_NAME": CALLER_DROP_AGENT, "DISPATCH_MODE": "api"}
    )
    config = stack_config(
        server, livekit, livekit_agent_name=CALLER_DROP_AGENT, agent_join_timeout=60
    )
    # A long call: eight turns with a pause before each, so the kill lands in the middle of it.
    scenario = Scenario(
        name="long-call",
        turns=tuple(Turn(f"Question number {i}: are you open on Friday?") for i in range(1, 9)),
        greeting_wait_seconds=20,
        response_timeout_seconds=10,
        pause_before_reply_seconds=3,
        max_duration_seconds=120,
    )
    call = asyncio.create_task(
        run_many(config, scenario, RunOptions(mode="text"), count=1, concurrency=1)
    )
    await _wait_for_a_room_with(livekit, participants=2, within=60)  # caller and agent
    # Into the conversation: the agent has heard the caller's first turn.
    for _ in range(600):
        if '"role": "user"' in worker.process.log_text():
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the agent never logged the caller's first turn")
    await asyncio.sleep(1)
    livekit.process.signal(signal.SIGKILL)
    result = (await asyncio.wait_for(call, 90)).results[0]

    assert result.end_reason == END_CALLER_DISCONNECTED, (result.end_reason, result.error)
    assert result.caller_disconnect_reason, result.caller_disconnect_reason
    assert result.failed_step == STEP_CONVERSATION
    assert "caller's own connection to LiveKit dropped" in (result.error or "")
    assert "agent left" not in (result.error or "")
    assert "LiveKit server stayed up" in (result.fix or "")
    assert 1 <= len(result.turns) < len(scenario.turns), len(result.turns)
