"""Scenario files: what the caller says, and the errors a bad file gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from client_harness.scenario import ScenarioError, load_scenario, scenario_from_dict
from local_stack import REPO_ROOT


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
    root = REPO_ROOT / "client_harness" / "scenarios"
    assert len(load_scenario(root / "booking.yaml").turns) == 3
