"""The verdict on a conversation that ran, from what was recorded: each ending names its cause."""

from __future__ import annotations

import pytest

from client_harness.caller.simulation import _judge
from client_harness.measurement.diagnosis import (
    AGENT_LEFT_EARLY,
    AGENT_NEVER_SPOKE,
    CALLER_CONNECTION_DROPPED,
    TURNS_UNANSWERED,
)
from client_harness.measurement.metrics import (
    END_AGENT_LEFT,
    END_CALLER_DISCONNECTED,
    END_COMPLETED,
    END_MAX_DURATION,
    STEP_CONVERSATION,
    Interval,
    SimulationResult,
    TurnRecord,
)
from client_harness.scenario import Scenario, Turn

SCENARIO = Scenario("s", (Turn("one"), Turn("two"), Turn("three")))


def result(end_reason: str, answered: list[bool], agent_spoke: bool) -> SimulationResult:
    r = SimulationResult(0, "room", "voice", "s", end_reason=end_reason, agent_identity="agent-1")
    r.turns = [
        TurnRecord(i, "x", i * 10.0, i * 10.0 + 1, agent_start=i * 10.0 + 2 if a else None)
        for i, a in enumerate(answered)
    ]
    if agent_spoke:
        r.agent_utterances = [Interval(0.5, 1.5, "hello")]
    return r


def test_every_turn_answered_passes() -> None:
    r = result(END_COMPLETED, [True, True, True], agent_spoke=True)
    _judge(SCENARIO, r, None)
    assert r.ok and r.failed_step is None and r.causes == []


def test_the_maximum_duration_passes_with_a_warning() -> None:
    r = result(END_MAX_DURATION, [True], agent_spoke=True)
    _judge(SCENARIO, r, None)
    assert r.ok
    assert r.warnings == ["ended at max_duration_seconds=120 after 1 of 3 caller turns"]


@pytest.mark.parametrize(
    ("end_reason", "answered", "spoke", "cause", "words"),
    [
        (END_AGENT_LEFT, [True, True], True, AGENT_LEFT_EARLY, "left after 2 of 3"),
        (END_CALLER_DISCONNECTED, [True], True, CALLER_CONNECTION_DROPPED, "12.5 s into"),
        (END_COMPLETED, [False, False, False], False, AGENT_NEVER_SPOKE, "never spoke"),
        (END_COMPLETED, [True, False, True], True, TURNS_UNANSWERED, "turn(s) [1]"),
    ],
)
def test_each_failed_ending_names_its_cause(
    end_reason: str, answered: list[bool], spoke: bool, cause: str, words: str
) -> None:
    r = result(end_reason, answered, spoke)
    r.caller_disconnect_reason = "SERVER_SHUTDOWN"
    _judge(SCENARIO, r, 12.5)
    assert not r.ok and r.failed_step == STEP_CONVERSATION
    assert r.cause == cause
    assert r.error is not None and words in r.error
    assert r.fix == r.causes[0].fix and r.fix


def test_an_agent_leaving_after_the_last_turn_is_a_completed_call() -> None:
    r = result(END_AGENT_LEFT, [True, True, True], agent_spoke=True)
    _judge(SCENARIO, r, None)
    assert r.ok
