"""`client-harness check`: the platform's connection test, one line per step, with the fix.

Steps, in the platform's order: endpoint reachable (and https), JSON answer with a recognised
token field, token claims sane, server URL scheme, WebSocket connect, agent joined in time,
agent audio heard. The first failure stops the run; later steps are shown as skipped.

The join and the wait for the agent, and the diagnosis when it does not come, are the very
function `run` uses (`simulation.join_and_wait_for_agent`): a failure `run` reports, `check`
reports with the same cause key (`StepResult.cause`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from client_harness.caller.call_room import AGENT_NAME_ATTR, CallRoom, Clock, kind_name
from client_harness.caller.claims import check_claims
from client_harness.caller.conversation import Speech
from client_harness.caller.simulation import join_and_wait_for_agent
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
    options = options or CheckOptions()
    steps: list[StepResult] = []

    def record(step: str, status: str, detail: str, fix: str = "", cause: str = "") -> bool:
        result = StepResult(step, status, detail, fix, cause)
        steps.append(result)
        if emit:
            emit(result)
        return status != FAIL

    def skip_rest() -> list[StepResult]:
        for step in STEPS[len(steps) :]:
            record(step, SKIP, "not run (an earlier step failed)")
        return steps

    room_name = new_room_name()
    request = build_token_request(config, room_name)
    # 1. reachable over HTTPS
    started = time.perf_counter()
    async with httpx.AsyncClient() as client:
        try:
            answer = await post_token_request(client, config, request)
        except TokenEndpointError as exc:
            record(STEPS[0], FAIL, f"{exc.message}: {exc.detail}", exc.fix)
            return skip_rest()
    elapsed = time.perf_counter() - started
    parts = urlsplit(request.url)
    scheme_note = (
        "https"
        if parts.scheme == "https"
        else (
            "plain http (accepted for loopback only)"
            if is_loopback_host(parts.hostname)
            else "plain http (--insecure)"
        )
    )
    record(
        STEPS[0],
        PASS,
        f"POST {request.url} answered HTTP {answer.status_code} "
        f"in {elapsed * 1000:.0f} ms, {scheme_note}",
    )

    # 2. JSON with a recognised token field (and 4. the server URL, checked by the same parser)
    try:
        response = read_answer(config, answer)
    except TokenEndpointError as exc:
        if exc.kind == KIND_SERVER_URL:
            record(STEPS[1], PASS, "token found")
            record(STEPS[2], SKIP, "not checked (no usable server URL)")
            record(STEPS[3], FAIL, f"{exc.message}: {exc.detail}", exc.fix)
        else:
            refusal = token_refusal_causes(answer.status_code, answer.content)
            record(
                STEPS[1],
                FAIL,
                f"{exc.message}: {exc.detail}",
                refusal[0].fix if refusal else exc.fix,
                refusal[0].key if refusal else "",
            )
        return skip_rest()
    note = f"; warning: {'; '.join(response.warnings)}" if response.warnings else ""
    record(STEPS[1], PASS, f"token in field {response.token_field!r}{note}")

    # 3. claims
    claims = check_claims(response.token, room_name)
    if not claims.ok:
        record(
            STEPS[2],
            FAIL,
            "; ".join(claims.problems),
            "mint the token for the requested room_name with roomJoin, publish and subscribe "
            "grants and a TTL longer than a simulation",
        )
        return skip_rest()
    agents = [a.get("agentName", "") for a in claims.dispatched_agents]
    record(
        STEPS[2],
        WARN if claims.warnings else PASS,
        f"room {room_name}, identity {claims.identity!r}, roomJoin"
        + (f", token dispatches {agents}" if agents else "")
        + (f"; {'; '.join(claims.warnings)}" if claims.warnings else ""),
    )

    # 4. server URL
    record(STEPS[3], PASS, f"{response.server_url} (from {response.server_url_source})")

    # 5–7. join, agent, audio: the same join/wait/diagnose as `run`.
    clock = Clock()
    room = CallRoom(clock, Recorder(), listen_audio=True)
    token = TokenResult(request, response, answer.status_code, elapsed)
    try:
        outcome = await join_and_wait_for_agent(
            config,
            token,
            claims,
            room,
            room_name,
            options.connect_timeout,
            lambda: record(STEPS[4], PASS, f"joined room {room_name} as {room.identity}"),
        )
        if outcome.step == STEP_CONNECT:
            record(STEPS[4], FAIL, outcome.error, outcome.fix)
            return skip_rest()
        agent = outcome.agent
        if agent is None:
            first = outcome.causes[0] if outcome.causes else None
            record(
                STEPS[5],
                FAIL,
                f"no participant joined within {config.agent_join_timeout:g} s"
                + (f" — {first.summary} ({first.evidence})" if first else ""),
                outcome.fix,
                outcome.cause or "",
            )
            for extra in outcome.causes[1:]:
                record_line = StepResult(
                    STEPS[5], "INFO", f"also possible: {extra.line()}", cause=extra.key
                )
                if emit:
                    emit(record_line)
            return skip_rest()
        join_started = outcome.connected_at or 0.0
        waited = (room.agent_joined_at or join_started) - join_started
        name = agent.attributes.get(AGENT_NAME_ATTR)
        kind = kind_name(agent.kind)
        mismatch = config.livekit_agent_name and name and name != config.livekit_agent_name
        record(
            STEPS[5],
            WARN if kind != "agent" or mismatch else PASS,
            f"{agent.identity} ({kind}{f', lk.agent.name={name!r}' if name else ''}) "
            f"after {max(0.0, waited):.2f} s"
            + (" — not an agent participant" if kind != "agent" else "")
            + (f" — expected agent name {config.livekit_agent_name!r}" if mismatch else ""),
        )

        heard = await room.wait_until(lambda: room.first_audio_at is not None, options.audio_wait)
        how = "greeting"
        if not heard:
            speech = Speech(transcribe=False)
            await room.publish_microphone(speech.sample_rate)
            await room.speak(await speech.synthesize(options.hello))
            how = "answer to a spoken hello"
            heard = await room.wait_until(
                lambda: room.first_audio_at is not None, options.audio_wait
            )
        if heard and room.first_audio_at is not None:
            after = room.first_audio_at - (room.connected_at or 0.0)
            record(STEPS[6], PASS, f"agent audio ({how}) {after:.2f} s after joining")
        else:
            tracks = [p.kind for p in agent.track_publications.values()] if room.agent else []
            record(
                STEPS[6],
                FAIL,
                "no agent speech heard" + ("" if tracks else " (the agent published no track)"),
                "make the agent publish an audio track and speak (greet, or answer the caller); "
                "check its TTS and logs",
            )
    finally:
        await room.close()
    return steps


def exit_code(steps: list[StepResult]) -> int:
    return 1 if any(s.status == FAIL for s in steps) else 0
