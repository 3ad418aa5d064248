"""`client-harness check`: the platform's connection test, one line per step, with the fix.

Steps, in the platform's order: endpoint reachable (and https), JSON answer with a recognised
token field, token claims sane, server URL scheme, WebSocket connect, agent joined in time,
agent audio heard. The first failure stops the run; later steps are shown as skipped.

The join and the wait for the agent, and the diagnosis when it does not come, are the very
function `run` uses (`agent_join.join_and_wait_for_agent`): a failure `run` reports, `check`
reports with the same cause key (`StepResult.cause`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from livekit import rtc

from client_harness.caller.agent_join import (
    JoinOutcome,
    join_and_wait_for_agent,
    non_agents_before_the_agent,
)
from client_harness.caller.call_room import AGENT_NAME_ATTR, CallRoom, Clock, kind_name
from client_harness.caller.claims import ClaimsReport, check_claims
from client_harness.caller.speech import Speech
from client_harness.caller.token_answer import KIND_SERVER_URL, TokenEndpointError
from client_harness.caller.token_fetch import (
    TokenResult,
    build_token_request,
    new_room_name,
    post_token_request,
    read_answer,
)
from client_harness.config import HarnessConfig
from client_harness.measurement.diagnosis import token_refusal_causes
from client_harness.measurement.metrics import STEP_CONNECT
from client_harness.measurement.recorder import Recorder
from client_harness.urls import is_loopback_host

PASS, FAIL, SKIP, WARN = "PASS", "FAIL", "SKIP", "WARN"

STEPS = (
    "endpoint reachable",
    "token in response",
    "token claims",
    "server URL",
    "websocket connect",
    "agent joined",
    "agent audio heard",
)


@dataclass
class StepResult:
    step: str
    status: str
    detail: str
    fix: str = ""
    cause: str = ""  # the diagnosed cause's stable key, when there is one

    def lines(self) -> list[str]:
        out = [f"[{self.status}] {self.step:<20} {self.detail}"]
        if self.fix:
            out.append(f"       {'':<20} fix: {self.fix}")
        return out


@dataclass(frozen=True)
class CheckOptions:
    audio_wait: float = 15.0  # greeting wait; then the caller says hello and waits this again
    connect_timeout: float = 10.0
    hello: str = "Hello, can you hear me?"


async def run_check(
    config: HarnessConfig,
    options: CheckOptions | None = None,
    emit: Callable[[StepResult], None] | None = None,
) -> list[StepResult]:
    """Run the steps; `emit` sees each result as soon as it is known."""
    check = _Check(config, options or CheckOptions(), emit)
    await check.run()
    return check.steps


class _Check:
    """One run of the steps; each step method records its result and says whether to go on."""

    def __init__(
        self,
        config: HarnessConfig,
        options: CheckOptions,
        emit: Callable[[StepResult], None] | None,
    ) -> None:
        self.config = config
        self.options = options
        self.emit = emit
        self.steps: list[StepResult] = []
        self.room_name = new_room_name()
        self.request = build_token_request(config, self.room_name)

    def record(self, step: str, status: str, detail: str, fix: str = "", cause: str = "") -> bool:
        result = StepResult(step, status, detail, fix, cause)
        self.steps.append(result)
        if self.emit:
            self.emit(result)
        return status != FAIL

    def skip_rest(self) -> None:
        for step in STEPS[len(self.steps) :]:
            self.record(step, SKIP, "not run (an earlier step failed)")

    async def run(self) -> None:
        token = await self._token()
        if token is None:
            return self.skip_rest()
        claims = self._claims(token)
        if claims is None:
            return self.skip_rest()
        response = token.response
        self.record(STEPS[3], PASS, f"{response.server_url} (from {response.server_url_source})")
        # 5–7. join, agent, audio: the same join/wait/diagnose as `run`.
        room = CallRoom(Clock(), Recorder(), listen_audio=True)
        try:
            agent = await self._agent(token, claims, room)
            if agent is None:
                return self.skip_rest()
            await self._agent_audio(room, agent)
        finally:
            await room.close()

    async def _token(self) -> TokenResult | None:
        """Steps 1–2 (and 4 when the answer's server URL is unusable): reachable, token found."""
        request = self.request
        started = time.perf_counter()
        async with httpx.AsyncClient() as client:
            try:
                answer = await post_token_request(client, self.config, request)
            except TokenEndpointError as exc:
                self.record(STEPS[0], FAIL, f"{exc.message}: {exc.detail}", exc.fix)
                return None
        elapsed = time.perf_counter() - started
        self.record(
            STEPS[0],
            PASS,
            f"POST {request.url} answered HTTP {answer.status_code} "
            f"in {elapsed * 1000:.0f} ms, {_scheme_note(request.url)}",
        )
        try:
            response = read_answer(self.config, answer)
        except TokenEndpointError as exc:
            self._unusable_answer(exc, answer)
            return None
        note = f"; warning: {'; '.join(response.warnings)}" if response.warnings else ""
        self.record(STEPS[1], PASS, f"token in field {response.token_field!r}{note}")
        return TokenResult(request, response, answer.status_code, elapsed)

    def _unusable_answer(self, exc: TokenEndpointError, answer: httpx.Response) -> None:
        if exc.kind == KIND_SERVER_URL:
            self.record(STEPS[1], PASS, "token found")
            self.record(STEPS[2], SKIP, "not checked (no usable server URL)")
            self.record(STEPS[3], FAIL, f"{exc.message}: {exc.detail}", exc.fix)
            return
        refusal = token_refusal_causes(answer.status_code, answer.content)
        self.record(
            STEPS[1],
            FAIL,
            f"{exc.message}: {exc.detail}",
            refusal[0].fix if refusal else exc.fix,
            refusal[0].key if refusal else "",
        )

    def _claims(self, token: TokenResult) -> ClaimsReport | None:
        """Step 3: the token is for the requested room, with the grants a caller needs."""
        claims = check_claims(token.response.token, self.room_name)
        if not claims.ok:
            self.record(
                STEPS[2],
                FAIL,
                "; ".join(claims.problems),
                "mint the token for the requested room_name with roomJoin, publish and subscribe "
                "grants and a TTL longer than a simulation",
            )
            return None
        agents = [a.get("agentName", "") for a in claims.dispatched_agents]
        self.record(
            STEPS[2],
            WARN if claims.warnings else PASS,
            f"room {self.room_name}, identity {claims.identity!r}, roomJoin"
            + (f", token dispatches {agents}" if agents else "")
            + (f"; {'; '.join(claims.warnings)}" if claims.warnings else ""),
        )
        return claims

    async def _agent(
        self, token: TokenResult, claims: ClaimsReport, room: CallRoom
    ) -> rtc.RemoteParticipant | None:
        """Steps 5–6: join the room and wait for the agent, diagnosing its absence."""
        outcome = await join_and_wait_for_agent(
            self.config,
            token,
            claims,
            room,
            self.room_name,
            self.options.connect_timeout,
            lambda: self.record(STEPS[4], PASS, f"joined room {self.room_name} as {room.identity}"),
        )
        if outcome.step == STEP_CONNECT:
            self.record(STEPS[4], FAIL, outcome.error, outcome.fix)
            return None
        if outcome.agent is None:
            self._no_agent(outcome)
            return None
        agent = outcome.agent
        join_started = outcome.connected_at or 0.0
        waited = (room.agent_joined_at or join_started) - join_started
        name = agent.attributes.get(AGENT_NAME_ATTR)
        expected = self.config.livekit_agent_name
        mismatch = expected and name and name != expected
        before = non_agents_before_the_agent(room)
        self.record(
            STEPS[5],
            WARN if before or mismatch else PASS,
            f"{agent.identity} ({kind_name(agent.kind)}"
            f"{f', lk.agent.name={name!r}' if name else ''}) after {max(0.0, waited):.2f} s"
            + "".join(f" — {warning}" for warning in before)
            + (f" — expected agent name {expected!r}" if mismatch else ""),
        )
        return agent

    def _no_agent(self, outcome: JoinOutcome) -> None:
        first = outcome.causes[0] if outcome.causes else None
        self.record(
            STEPS[5],
            FAIL,
            f"no participant joined within {self.config.agent_join_timeout:g} s"
            + (f" — {first.summary} ({first.evidence})" if first else ""),
            outcome.fix,
            outcome.cause or "",
        )
        for extra in outcome.causes[1:]:
            if self.emit:
                self.emit(
                    StepResult(STEPS[5], "INFO", f"also possible: {extra.line()}", cause=extra.key)
                )

    async def _agent_audio(self, room: CallRoom, agent: rtc.RemoteParticipant) -> None:
        """Step 7: the agent is heard, greeting or answering a spoken hello."""
        wait = self.options.audio_wait
        heard = await room.wait_until(lambda: room.first_audio_at is not None, wait)
        how = "greeting"
        if not heard:
            speech = Speech(transcribe=False)
            await room.publish_microphone(speech.sample_rate)
            await room.speak(await speech.synthesize(self.options.hello))
            how = "answer to a spoken hello"
            heard = await room.wait_until(lambda: room.first_audio_at is not None, wait)
        if heard and room.first_audio_at is not None:
            after = room.first_audio_at - (room.connected_at or 0.0)
            self.record(STEPS[6], PASS, f"agent audio ({how}) {after:.2f} s after joining")
            return
        tracks = [p.kind for p in agent.track_publications.values()]
        self.record(
            STEPS[6],
            FAIL,
            "no agent speech heard" + ("" if tracks else " (the agent published no track)"),
            "make the agent publish an audio track and speak (greet, or answer the caller); "
            "check its TTS and logs",
        )


def _scheme_note(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return "https"
    if is_loopback_host(parts.hostname):
        return "plain http (accepted for loopback only)"
    return "plain http (--insecure)"


def exit_code(steps: list[StepResult]) -> int:
    return 1 if any(s.status == FAIL for s in steps) else 0
