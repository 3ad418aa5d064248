"""A conversation script for the simulated caller: persona, turns, and how long to wait.

YAML, e.g.:

    name: restaurant-booking
    persona: A regular who wants a table for Friday.
    max_duration_seconds: 120
    turns:
      - say: I would like to book a table for four on Friday at seven.
        expect_any: [book, table]     # optional: words one of which the agent's reply should use
      - say: Thank you, goodbye.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# The scenario `client-harness run` and the demo use when none is given.
DEFAULT_SCENARIO = Path(__file__).resolve().parent / "scenarios" / "booking.yaml"


class ScenarioError(ValueError):
    """The scenario file is unusable; the message names the key."""


@dataclass(frozen=True)
class Turn:
    say: str
    expect_any: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    turns: tuple[Turn, ...]
    persona: str = ""
    max_duration_seconds: float = 120.0
    greeting_wait_seconds: float = 10.0  # how long to wait for the agent to speak first
    response_timeout_seconds: float = 15.0  # caller's end of speech → agent's first audio/text
    max_agent_turn_seconds: float = 30.0  # longest agent utterance we wait out
    long_silence_seconds: float = 3.0  # a gap nobody speaks in that counts as a long silence
    pause_before_reply_seconds: float = 0.3  # caller's reaction time after the agent finishes
    extra: dict[str, Any] = field(default_factory=dict)


_NUMBERS = (
    "max_duration_seconds",
    "greeting_wait_seconds",
    "response_timeout_seconds",
    "max_agent_turn_seconds",
    "long_silence_seconds",
    "pause_before_reply_seconds",
)


def scenario_from_dict(data: Any, source: str = "scenario") -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: must be a mapping with at least `turns`")
    raw_turns = data.get("turns")
    if not isinstance(raw_turns, list) or not raw_turns:
        raise ScenarioError(f"{source}: turns: a non-empty list of caller turns is required")
    turns: list[Turn] = []
    for i, item in enumerate(raw_turns, 1):
        if isinstance(item, str):
            item = {"say": item}
        if not isinstance(item, dict) or not str(item.get("say", "")).strip():
            raise ScenarioError(f"{source}: turns[{i}]: needs a non-empty `say`")
        expect = item.get("expect_any", [])
        if isinstance(expect, str):
            expect = [expect]
        turns.append(Turn(str(item["say"]).strip(), tuple(str(e).lower() for e in expect)))
    numbers: dict[str, float] = {}
    for key in _NUMBERS:
        if key in data:
            try:
                numbers[key] = float(data[key])
            except (TypeError, ValueError):
                raise ScenarioError(f"{source}: {key}: {data[key]!r} is not a number") from None
            if numbers[key] < 0:
                raise ScenarioError(f"{source}: {key}: must not be negative")
    known = {"name", "persona", "turns", *_NUMBERS}
    return Scenario(
        name=str(data.get("name") or Path(source).stem),
        persona=str(data.get("persona") or ""),
        turns=tuple(turns),
        extra={k: v for k, v in data.items() if k not in known},
        **numbers,
    )


def load_scenario(path: Path) -> Scenario:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    return scenario_from_dict(data, str(path))
