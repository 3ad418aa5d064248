"""What one simulation measured, and the pure arithmetic over its timeline.

All times are seconds on the simulation's own clock, whose zero is the moment the token request
was sent; durations (`*_s`) are differences on that clock.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from client_harness.measurement.diagnosis import Cause

# Steps, in the order the platform performs them; a failure names the one it stopped at.
STEP_TOKEN = "token_request"  # noqa: S105
STEP_CONNECT = "connect"
STEP_AGENT_JOIN = "agent_join"
STEP_CONVERSATION = "conversation"

END_COMPLETED = "completed"
END_MAX_DURATION = "max_duration"
END_AGENT_LEFT = "agent_left"
# The caller's own connection to LiveKit dropped (the server went away, or the network between the
# caller and it): not the agent's doing, even when the agent looks gone too.
END_CALLER_DISCONNECTED = "caller_disconnected"
END_FAILED = "failed"

OVERLAP_MIN_SECONDS = 0.2  # shorter overlaps are echo of turn edges, not interruptions


@dataclass
class Interval:
    start: float
    end: float
    text: str = ""

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass
class TurnRecord:
    index: int
    caller_text: str
    caller_start: float
    caller_end: float
    agent_start: float | None = None  # agent's first audio (voice) or first text (text mode)
    agent_end: float | None = None
    agent_text: str = ""
    expect_any: tuple[str, ...] = ()

    @property
    def answered(self) -> bool:
        return self.agent_start is not None

    @property
    def response_latency_s(self) -> float | None:
        return None if self.agent_start is None else self.agent_start - self.caller_end

    @property
    def expectation_met(self) -> bool | None:
        if not self.expect_any:
            return None
        text = self.agent_text.lower()
        return any(word in text for word in self.expect_any)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["expect_any"] = list(self.expect_any)
        out["response_latency_s"] = self.response_latency_s
        out["answered"] = self.answered
        out["expectation_met"] = self.expectation_met
        return out


@dataclass
class SimulationResult:
    index: int
    room_name: str
    mode: str
    scenario: str
    ok: bool = False
    failed_step: str | None = None
    error: str | None = None
    fix: str | None = None
    causes: list[Cause] = field(default_factory=list)  # most specific first (see diagnosis)
    end_reason: str | None = None
    # Why the caller's own connection ended (END_CALLER_DISCONNECTED): the rtc DisconnectReason
    # name, or "reconnecting" when the SDK was still trying to get the connection back.
    caller_disconnect_reason: str | None = None
    server_url: str | None = None
    # Unix time of the timeline's zero (the token request): every timing below is seconds after
    # it, so a report lines up with the server's and the agent's logs.
    started_at: float | None = None
    # Timings.
    token_request_s: float | None = None
    connect_s: float | None = None
    agent_join_from_connect_s: float | None = None
    agent_join_from_token_request_s: float | None = None
    first_agent_audio_s: float | None = None  # from connect to the agent's first speech
    duration_s: float | None = None
    # The agent as seen in the room.
    agent_identity: str | None = None
    agent_kind: str | None = None
    agent_name: str | None = None
    # The conversation.
    turns: list[TurnRecord] = field(default_factory=list)
    caller_utterances: list[Interval] = field(default_factory=list)
    agent_utterances: list[Interval] = field(default_factory=list)
    overlaps: list[Interval] = field(default_factory=list)
    long_silences: list[Interval] = field(default_factory=list)
    recording: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def diagnosis(self) -> list[str]:
        """The causes as lines (summary, evidence, fix), for people."""
        return [cause.line() for cause in self.causes]

    @property
    def cause(self) -> str | None:
        """The stable key of the most specific cause, if the failure was diagnosed."""
        return self.causes[0].key if self.causes else None

    @property
    def agent_talk_s(self) -> float | None:
        """Seconds of agent speech (voice mode; text segments carry no speaking time)."""
        if self.mode != "voice":
            return None
        return sum(u.duration for u in self.agent_utterances)

    @property
    def response_latencies(self) -> list[float]:
        return [t.response_latency_s for t in self.turns if t.response_latency_s is not None]

    @property
    def first_response_latency_s(self) -> float | None:
        """Latency of the first caller turn the agent answered (the bench's headline)."""
        lat = self.response_latencies
        return lat[0] if lat else None

    def fail(self, step: str, error: str, fix: str = "") -> None:
        self.ok = False
        self.failed_step = step
        self.error = error
        self.fix = fix or None
        self.end_reason = self.end_reason or END_FAILED

    def fail_with(self, step: str, cause: Cause) -> None:
        """Failed at `step` for a diagnosed reason: its summary is the error, its fix the fix."""
        self.causes = [cause]
        self.fail(step, cause.summary, cause.fix)

    def transcript(self) -> list[dict[str, Any]]:
        """Both sides, in timeline order."""
        lines = [{"who": "caller", **asdict(u)} for u in self.caller_utterances]
        lines += [{"who": "agent", **asdict(u)} for u in self.agent_utterances]
        return sorted(lines, key=lambda x: x["start"])

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: v
            for k, v in asdict(self).items()
            if k not in ("turns", "caller_utterances", "agent_utterances")
        }
        out["turns"] = [t.to_json() for t in self.turns]
        out["cause"] = self.cause
        out["diagnosis"] = self.diagnosis
        out["agent_talk_s"] = self.agent_talk_s
        out["first_response_latency_s"] = self.first_response_latency_s
        out["transcript"] = self.transcript()
        return out


def overlaps(
    caller: list[Interval], agent: list[Interval], minimum: float = OVERLAP_MIN_SECONDS
) -> list[Interval]:
    """Spans where both sides spoke at once for at least `minimum` seconds."""
    out = []
    for a in caller:
        for b in agent:
            start, end = max(a.start, b.start), min(a.end, b.end)
            if end - start >= minimum:
                out.append(Interval(start, end, "agent" if b.start > a.start else "caller"))
    return sorted(out, key=lambda i: i.start)


def silences(speech: list[Interval], start: float, end: float, threshold: float) -> list[Interval]:
    """Gaps of at least `threshold` seconds between `start` and `end` where nobody spoke."""
    out = []
    cursor = start
    for span in sorted(speech, key=lambda i: i.start):
        if span.start - cursor >= threshold:
            out.append(Interval(cursor, span.start))
        cursor = max(cursor, span.end)
    if end - cursor >= threshold:
        out.append(Interval(cursor, end))
    return out
