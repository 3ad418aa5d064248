"""The harness against the real stack: livekit-server, the token endpoint, the sample agent.

Kept lean for 2 shared cores: one spoken simulation (2 caller turns), the join-timeout and
dispatch diagnoses (3 s waits, no agent needed), `check` end to end, and 10 concurrent
simulations in text mode (lk.chat in, lk.transcription out: the agent skips speech recognition,
still speaks, and the harness does not decode audio).
"""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from client_harness.check import PASS, run_check
from client_harness.config import HarnessConfig
from client_harness.local_stack import AgentWorker, LiveKitServer, TokenServer
from client_harness.metrics import (
    END_COMPLETED,
    STEP_AGENT_JOIN,
    STEP_CONNECT,
    STEP_TOKEN,
    SimulationResult,
)
from client_harness.runner import run_many
from client_harness.scenario import Scenario, scenario_from_dict
from client_harness.simulation import RunOptions
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
    assert result.agent_talk_s > 2.0

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
    assert "no dispatch_id in the token response" in result.diagnosis[0]


async def test_dispatch_without_a_running_worker(
    start_token_server: Callable[..., TokenServer], harness_config_for: ConfigFor
) -> None:
    server = start_token_server(AGENT_NAME="nobody-runs-this", DISPATCH_MODE="api")
    config = harness_config_for(server, agent_join_timeout=3)
    result = (
        await run_many(config, BOOKING, RunOptions(mode="text"), count=1, concurrency=1)
    ).results[0]
    assert result.failed_step == STEP_AGENT_JOIN
    assert result.diagnosis[0].startswith("Dispatch exists but no agent took it")
    assert "nobody-runs-this" in result.diagnosis[0]


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
    from client_harness.local_stack import free_port

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
