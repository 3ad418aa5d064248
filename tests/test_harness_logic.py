"""Pure logic of the harness: VAD edges, timeline arithmetic, diagnosis rules, scenario files,
reports. No network, no models."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from client_harness.diagnosis import (
    AGENT_NEVER_JOINED,
    AGENT_UNAVAILABLE,
    DISPATCH_NOT_LISTED,
    ERR_NO_CAPACITY,
    ERR_NO_SERVERS,
    JOB_FAILED_KEY,
    LOG_NO_WORKER_REGISTERED,
    NO_WORKER_TOOK_JOB,
    Cause,
    JoinObservation,
    ListedDispatch,
    ListedJob,
    diagnose_agent_join,
    token_refusal_causes,
)
from client_harness.metrics import (
    STEP_AGENT_JOIN,
    Interval,
    SimulationResult,
    TurnRecord,
    overlaps,
    silences,
)
from client_harness.recorder import AGENT, CALLER, Recorder
from client_harness.report import percentile, summarize, write_json, write_junit
from client_harness.scenario import ScenarioError, load_scenario, scenario_from_dict
from client_harness.vad import EnergyVad, VadSettings

RATE = 16_000
FRAME = 0.02


def frames(pattern: str) -> list[np.ndarray]:
    """'s' = a 20 ms frame of loud tone, '.' = a silent frame."""
    n = int(RATE * FRAME)
    tone = (8000 * np.sin(np.arange(n) * 2 * np.pi * 220 / RATE)).astype(np.int16)
    return [tone if c == "s" else np.zeros(n, np.int16) for c in pattern]


def run_vad(
    pattern: str, settings: VadSettings | None = None
) -> tuple[EnergyVad, list[tuple[float, str]]]:
    vad = EnergyVad(settings)
    edges = []
    for i, pcm in enumerate(frames(pattern)):
        edge = vad.push(i * FRAME, FRAME, pcm)
        if edge:
            edges.append((round(i * FRAME, 2), edge))
    return vad, edges


def test_vad_finds_start_and_end() -> None:
    vad, edges = run_vad("." * 10 + "s" * 50 + "." * 50)
    assert [e for _, e in edges] == ["start", "end"]
    (utterance,) = vad.utterances
    assert utterance.start == pytest.approx(0.2) and utterance.end == pytest.approx(1.2)


def test_vad_keeps_a_short_pause_inside_one_utterance() -> None:
    vad, _ = run_vad("s" * 20 + "." * 25 + "s" * 20 + "." * 50)  # 0.5 s pause < 0.8 s
    assert len(vad.utterances) == 1


def test_vad_splits_on_a_long_pause_and_ignores_clicks() -> None:
    vad, _ = run_vad("s" * 20 + "." * 50 + "s" + "." * 10 + "s" * 20 + "." * 50)
    assert len(vad.utterances) == 2


def test_vad_flush_closes_an_open_utterance() -> None:
    vad, _ = run_vad("." * 5 + "s" * 10)
    assert vad.speaking and vad.flush() is not None and not vad.speaking


def test_recorder_places_audio_on_the_timeline(tmp_path: Path) -> None:
    rec = Recorder()
    one = np.full(RATE // 10, 1000, np.int16)
    rec.place(CALLER, 0.5, one, RATE)
    rec.place(AGENT, 1.0, np.full(2400, 2000, np.int16), 24_000)  # resampled to 16 kHz
    assert rec.duration() == pytest.approx(1.1)
    assert rec.slice(CALLER, 0.5, 0.6).min() == 1000 and rec.slice(CALLER, 0.0, 0.5).max() == 0
    import wave

    with wave.open(str(rec.write_wav(tmp_path / "x.wav"))) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, RATE)
        stereo = np.frombuffer(wav.readframes(wav.getnframes()), np.int16).reshape(-1, 2)
    assert stereo[int(0.55 * RATE), 0] == 1000 and stereo[int(0.55 * RATE), 1] == 0
    assert stereo[int(1.05 * RATE), 1] > 1500


def test_overlaps_and_silences() -> None:
    caller = [Interval(0.0, 2.0), Interval(5.0, 6.0)]
    agent = [Interval(1.5, 3.0), Interval(6.1, 7.0), Interval(12.0, 13.0)]
    (overlap,) = overlaps(caller, agent)
    assert (overlap.start, overlap.end, overlap.text) == (1.5, 2.0, "agent")
    gaps = silences(caller + agent, 0.0, 16.0, threshold=3.0)
    assert [(g.start, g.end) for g in gaps] == [(7.0, 12.0), (13.0, 16.0)]


def test_turn_latency_and_expectations() -> None:
    turn = TurnRecord(
        1, "hi", 1.0, 2.0, agent_start=2.75, agent_text="A table for Friday", expect_any=("friday",)
    )
    assert turn.response_latency_s == pytest.approx(0.75) and turn.expectation_met
    assert TurnRecord(2, "x", 0, 1).response_latency_s is None


AUTOMATIC = ListedDispatch("", "AD_auto")  # livekit-server adds it to every room it creates


def taken(status: str, error: str = "") -> ListedJob:
    return ListedJob("AJ_1", status, error, participant_identity="agent-AJ_1", worker_id="AW_1")


@pytest.mark.parametrize(
    ("observation", "first"),
    [
        (JoinObservation("r", 3, listed_dispatches=(AUTOMATIC,)), "no_dispatch"),
        (JoinObservation("r", 3), "no_dispatch"),
        (
            JoinObservation(
                "r", 3, configured_agent_name="a", listed_dispatches=(ListedDispatch("b"),)
            ),
            "agent_name_mismatch",
        ),
        (JoinObservation("r", 3, listed_dispatches=(ListedDispatch("a"),)), NO_WORKER_TOOK_JOB),
        (JoinObservation("r", 3, token_room="other"), "room_mismatch"),
        (JoinObservation("r", 3, token_agents=("a",)), "token_dispatch_ignored"),
        (
            JoinObservation("r", 3, response_dispatch_id="AD_1", response_agent_name="a"),
            "agent_not_running",
        ),
        (
            JoinObservation("r", 3, response_dispatch_id="AD_1", listed_dispatches=(AUTOMATIC,)),
            DISPATCH_NOT_LISTED,
        ),
        (
            JoinObservation(
                "r", 3, listed_dispatches=(ListedDispatch("a", "AD_1", (taken("JS_FAILED"),)),)
            ),
            JOB_FAILED_KEY,
        ),
        (
            JoinObservation(
                "r", 3, listed_dispatches=(ListedDispatch("a", "AD_1", (taken("JS_RUNNING"),)),)
            ),
            AGENT_NEVER_JOINED,
        ),
    ],
)
def test_join_diagnosis_rules(observation: JoinObservation, first: str) -> None:
    causes = diagnose_agent_join(observation)
    assert causes[0].key == first
    assert all(c.fix and c.summary and c.evidence for c in causes)


def test_a_dispatch_no_worker_took_names_both_server_reasons() -> None:
    listed = (AUTOMATIC, ListedDispatch("booker", "AD_1"), ListedDispatch("booker", "AD_2"))
    obs = JoinObservation(
        "r", 30, configured_agent_name="booker", response_dispatch_id="AD_2",
        listed_dispatches=listed,
    )  # fmt: skip
    (cause,) = diagnose_agent_join(obs)
    assert cause.key == NO_WORKER_TOOK_JOB
    assert "2 dispatches AD_1, AD_2 of 'booker'" in cause.evidence
    assert "empty state.jobs after 30 s" in cause.evidence
    # No worker registered under the name, or every worker full: each with livekit-server's line.
    assert LOG_NO_WORKER_REGISTERED in cause.fix
    assert ERR_NO_CAPACITY in cause.fix and ERR_NO_SERVERS in cause.fix
    assert "target_load" in cause.fix


def test_a_failed_job_gives_its_error() -> None:
    failed = ListedJob("AJ_9", "JS_FAILED", "entrypoint raised ValueError")
    obs = JoinObservation(
        "r", 3, configured_agent_name="a",
        listed_dispatches=(ListedDispatch("a", "AD_1", (taken("JS_RUNNING"), failed)),),
    )  # fmt: skip
    cause = diagnose_agent_join(obs)[0]
    assert cause.key == JOB_FAILED_KEY
    assert "AJ_9" in cause.evidence and "entrypoint raised ValueError" in cause.evidence
    assert "AJ_9" in cause.fix


def test_a_job_taken_without_an_agent_names_the_job_and_participant() -> None:
    obs = JoinObservation(
        "r", 12, listed_dispatches=(ListedDispatch("a", "AD_1", (taken("JS_RUNNING"),)),)
    )
    cause = diagnose_agent_join(obs)[0]
    assert cause.key == AGENT_NEVER_JOINED
    assert "worker AW_1 took job AJ_1" in cause.evidence
    assert "'agent-AJ_1'" in cause.evidence and "12 s" in cause.evidence


def test_the_expected_agents_dispatch_is_judged_not_another_ones() -> None:
    other = ListedDispatch("other", "AD_1", (taken("JS_RUNNING"),))
    mine = ListedDispatch("mine", "AD_2")
    causes = diagnose_agent_join(
        JoinObservation("r", 3, configured_agent_name="mine", listed_dispatches=(other, mine))
    )
    assert [c.key for c in causes] == [NO_WORKER_TOOK_JOB]
    assert "'mine'" in causes[0].evidence and "'other'" not in causes[0].evidence


def test_listed_dispatch_reads_the_server_api_message() -> None:
    from livekit import api
    from livekit.protocol import agent

    from client_harness.simulation import listed_dispatch

    job = agent.Job(
        id="AJ_1",
        state=agent.JobState(
            status=agent.JobStatus.JS_FAILED, error="boom", participant_identity="p",
            worker_id="AW_1",
        ),
    )  # fmt: skip
    message = api.AgentDispatch(id="AD_1", agent_name="a", state=api.AgentDispatchState(jobs=[job]))
    assert listed_dispatch(message) == ListedDispatch(
        "a", "AD_1", (ListedJob("AJ_1", "JS_FAILED", "boom", "p", "AW_1"),)
    )
    assert listed_dispatch(api.AgentDispatch(id="AD_2", agent_name="a")).jobs == ()


def test_strict_mode_refusal_is_a_cause_and_shows_the_endpoint_detail() -> None:
    from client_harness.token_response import TokenEndpointError, parse_token_response

    body = json.dumps({"error": AGENT_UNAVAILABLE, "detail": "no worker registered as 'a'"})
    (cause,) = token_refusal_causes(503, body.encode())
    assert cause.key == AGENT_UNAVAILABLE
    assert "no worker registered as 'a'" in cause.evidence and "HTTP 503" in cause.evidence
    assert LOG_NO_WORKER_REGISTERED in cause.fix
    # The token step's error carries the endpoint's own error code and detail.
    with pytest.raises(TokenEndpointError) as info:
        parse_token_response(503, "application/json", body)
    assert "'agent_unavailable'" in info.value.detail
    assert "no worker registered as 'a'" in info.value.detail
    failed = b'{"error": "agent_job_failed", "detail": "the worker took the job and it failed"}'
    assert [c.key for c in token_refusal_causes(503, failed)] == [JOB_FAILED_KEY]
    # Other refusals are shown as they are, without a cause.
    assert token_refusal_causes(503, b'{"error": "livekit_unavailable"}') == []
    assert token_refusal_causes(502, b"<html>") == []
    assert token_refusal_causes(200, body) == []


async def test_caller_connection_state_tracks_the_rtc_events() -> None:
    from livekit import rtc

    from client_harness.session import CallRoom, Clock

    room = CallRoom(Clock(), Recorder(), listen_audio=False)
    assert room.caller_connection_lost() is None
    room._on_reconnecting()
    assert room.caller_connection_lost() == "reconnecting" and room.connection_lost_at is not None
    room._on_reconnected()  # a resume: the call goes on
    assert room.caller_connection_lost() is None and room.connection_lost_at is None
    room._on_reconnecting()
    room._on_disconnected(rtc.DisconnectReason.SERVER_SHUTDOWN)
    assert room.caller_connection_lost() == "SERVER_SHUTDOWN" and room.disconnected.is_set()
    room._on_reconnected()  # too late: the connection had ended
    assert room.caller_connection_lost() == "SERVER_SHUTDOWN"
    await room.close()

    # Leaving the room ourselves is not a lost connection.
    ours = CallRoom(Clock(), Recorder(), listen_audio=False)
    await ours.close()
    ours._on_disconnected(rtc.DisconnectReason.CLIENT_INITIATED)
    assert ours.caller_connection_lost() is None and ours.disconnected.is_set()


def test_listing_error_is_reported() -> None:
    causes = diagnose_agent_join(JoinObservation("r", 3, list_error="401"))
    assert causes[-1].key == "diagnosis_incomplete"


def test_scenario_file(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: x\npersona: p\nmax_duration_seconds: 30\nturns:\n  - hello\n"
        "  - say: book a table\n    expect_any: Table\n"
    )
    scenario = load_scenario(path)
    assert [t.say for t in scenario.turns] == ["hello", "book a table"]
    assert scenario.turns[1].expect_any == ("table",) and scenario.max_duration_seconds == 30


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({}, "turns"),
        ({"turns": []}, "turns"),
        ({"turns": [{"say": ""}]}, "turns[1]"),
        ({"turns": ["x"], "max_duration_seconds": "long"}, "not a number"),
        ({"turns": ["x"], "response_timeout_seconds": -1}, "negative"),
        ([1], "mapping"),
    ],
)
def test_scenario_errors(data: object, needle: str) -> None:
    with pytest.raises(ScenarioError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        scenario_from_dict(data)


def test_the_shipped_scenario_loads() -> None:
    root = Path(__file__).resolve().parent.parent / "client_harness" / "scenarios"
    assert len(load_scenario(root / "booking.yaml").turns) == 3


def test_percentile() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile(list(map(float, range(101))), 95) == pytest.approx(95.0)


def test_reports(tmp_path: Path) -> None:
    good = SimulationResult(
        0,
        "room-a",
        "text",
        "s",
        ok=True,
        end_reason="completed",
        token_request_s=0.1,
        duration_s=10.0,
    )
    good.turns.append(
        TurnRecord(1, "hi", 1.0, 1.0, agent_start=1.5, agent_end=2.0, agent_text="hello")
    )
    bad = SimulationResult(1, "room-b", "text", "s")
    bad.fail(STEP_AGENT_JOIN, "no agent joined", "dispatch it")
    bad.causes = [
        Cause("no_dispatch", "No agent dispatch visible", "nothing listed", "dispatch it")
    ]
    summary = summarize([good, bad])
    assert summary["success_rate"] == 0.5 and summary["failed_steps"] == {"agent_join": 1}
    assert summary["causes"] == {"no_dispatch": 1}
    assert summary["timings"]["response_latency_s"]["p50"] == pytest.approx(0.5)
    doc = json.loads(write_json(tmp_path / "r.json", [good, bad], summary, {}).read_text())
    assert doc["simulations"][1]["failed_step"] == "agent_join"
    assert doc["simulations"][1]["cause"] == "no_dispatch"
    assert doc["simulations"][1]["causes"][0]["key"] == "no_dispatch"
    assert doc["simulations"][1]["diagnosis"][0].startswith("No agent dispatch visible")
    suite = ET.parse(write_junit(tmp_path / "j.xml", [good, bad])).getroot()  # noqa: S314 - ours
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    failure = suite.findall("testcase")[1].find("failure")
    assert failure is not None and "[agent_join]" in failure.get("message", "")
    assert "dispatch it" in (failure.text or "")


def test_the_shipped_local_config_loads() -> None:
    from client_harness.config import load_config

    path = Path(__file__).resolve().parent.parent / "client_harness" / "configs" / "local.yaml"
    config = load_config(path, env={})
    assert config.generate_token_endpoint.startswith("http://127.0.0.1")
    assert config.livekit_agent_name and config.payload["agent_variant"] == "booking"
