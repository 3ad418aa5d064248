"""The report: percentiles, summary, report.json and junit.xml."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from client_harness.measurement.diagnosis import (
    Cause,
)
from client_harness.measurement.metrics import (
    STEP_AGENT_JOIN,
    SimulationResult,
    TurnRecord,
)
from client_harness.report import percentile, summarize, write_json, write_junit


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
