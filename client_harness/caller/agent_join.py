"""Join the room as the platform does and wait for the agent; when it does not come, gather the
evidence (the server API's dispatch listing, the token's claims, the endpoint's answer) and let
`measurement.diagnosis` name the cause. `run` and `check` both join through
`join_and_wait_for_agent`, so both call the same things a failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from livekit import api, rtc

from client_harness.caller.call_room import CallRoom, kind_name
from client_harness.caller.claims import ClaimsReport
from client_harness.caller.token_fetch import TokenResult
from client_harness.config import HarnessConfig
from client_harness.measurement.diagnosis import (
    Cause,
    JoinObservation,
    ListedDispatch,
    ListedJob,
    connect_fix,
    diagnose_agent_join,
)
from client_harness.measurement.metrics import STEP_AGENT_JOIN, STEP_CONNECT


def api_url_for(config: HarnessConfig, server_url: str) -> str:
    """The server API URL for dispatch listing: configured, else the ws URL as http."""
    if config.livekit_api_url:
        return config.livekit_api_url
    parts = urlsplit(server_url)
    scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))


def listed_dispatch(dispatch: api.AgentDispatch) -> ListedDispatch:
    """A dispatch as the server API lists it, with what became of its jobs."""
    jobs = tuple(
        ListedJob(
            id=job.id,
            status=api.JobStatus.Name(job.state.status),
            error=job.state.error,
            participant_identity=job.state.participant_identity,
            worker_id=job.state.worker_id,
        )
        for job in dispatch.state.jobs
    )
    return ListedDispatch(agent_name=dispatch.agent_name, id=dispatch.id, jobs=jobs)


async def list_dispatches(
    config: HarnessConfig, server_url: str, room: str
) -> tuple[ListedDispatch, ...]:
    """The dispatches of `room` and their jobs, from the LiveKit server API (diagnosis only)."""
    lkapi = api.LiveKitAPI(
        api_url_for(config, server_url), config.livekit_api_key, config.livekit_api_secret
    )
    try:
        async with asyncio.timeout(5):
            dispatches = await lkapi.agent_dispatch.list_dispatch(room)
        return tuple(listed_dispatch(d) for d in dispatches)
    finally:
        await lkapi.aclose()


async def diagnose_join_timeout(
    config: HarnessConfig,
    token: TokenResult,
    claims: ClaimsReport,
    room_name: str,
    non_agents: tuple[str, ...] = (),
) -> list[Cause]:
    listed: tuple[ListedDispatch, ...] | None = None
    list_error = None
    if config.can_list_dispatches:
        try:
            listed = await list_dispatches(config, token.response.server_url, room_name)
        except Exception as exc:
            list_error = f"{type(exc).__name__}: {exc}"
    body = token.response.body
    video = claims.claims.get("video") if isinstance(claims.claims.get("video"), dict) else {}
    observation = JoinObservation(
        requested_room=room_name,
        waited_seconds=config.agent_join_timeout,
        configured_agent_name=config.livekit_agent_name,
        response_room=token.response.room_name,
        response_dispatch_id=str(body.get("dispatch_id") or body.get("dispatchId") or "") or None,
        response_agent_name=str(body.get("agent_name") or "") or None,
        token_room=(video or {}).get("room"),
        token_agents=tuple(str(a.get("agentName", "")) for a in claims.dispatched_agents),
        listed_dispatches=listed,
        list_error=list_error,
        non_agents=non_agents,
    )
    return diagnose_agent_join(observation)


@dataclass
class JoinOutcome:
    """How the join → wait for the agent step ended; `step` names where it failed (None: the
    agent joined)."""

    step: str | None = None
    error: str = ""
    fix: str = ""
    causes: list[Cause] = field(default_factory=list)
    agent: rtc.RemoteParticipant | None = None
    connected_at: float | None = None  # on the room's clock

    @property
    def cause(self) -> str | None:
        return self.causes[0].key if self.causes else None


async def join_and_wait_for_agent(
    config: HarnessConfig,
    token: TokenResult,
    claims: ClaimsReport,
    room: CallRoom,
    room_name: str,
    connect_timeout: float,
    on_connected: Callable[[], object] = lambda: None,
) -> JoinOutcome:
    """Join the room as the platform does, wait for the first participant, and diagnose a
    failure: `run` and `check` both go through here. `on_connected` runs once joined."""
    response = token.response
    try:
        await room.connect(response.server_url, response.token, connect_timeout)
    except (rtc.ConnectError, TimeoutError, OSError) as exc:
        text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        return JoinOutcome(
            STEP_CONNECT,
            f"could not join {response.server_url} ({response.server_url_source}): {text}",
            connect_fix(text, response.server_url_source),
        )
    outcome = JoinOutcome(connected_at=room.connected_at)
    on_connected()
    try:
        outcome.agent = await room.wait_for_agent(config.agent_join_timeout)
    except TimeoutError:
        non_agents = tuple(f"{p.identity} ({kind_name(p.kind)})" for p, _ in room.non_agents)
        outcome.causes = await diagnose_join_timeout(config, token, claims, room_name, non_agents)
        outcome.step = STEP_AGENT_JOIN
        outcome.error = f"no agent joined room {room_name} within {config.agent_join_timeout:g} s"
        outcome.fix = outcome.causes[0].fix if outcome.causes else ""
    return outcome


def non_agents_before_the_agent(room: CallRoom) -> list[str]:
    """A warning per participant that is not an agent and joined before it: the platform's
    on_first_participant_joined fires on the first one, and it would start talking then."""
    return [
        f"{p.identity} ({kind_name(p.kind)}, not an agent) joined "
        f"{(room.agent_joined_at or at) - at:.1f} s before the agent: the platform takes the "
        "first participant to join for the agent and would start the conversation then"
        for p, at in room.non_agents
    ]
