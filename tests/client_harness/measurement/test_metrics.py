"""The result record: turn latencies, expectations, overlaps and silences."""

from __future__ import annotations

import pytest

from client_harness.measurement.metrics import (
    Interval,
    TurnRecord,
    overlaps,
    silences,
)


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
