"""Why the agent did not join: match what was observed to the platform's troubleshooting causes.

The platform's guide lists the usual reasons an agent never joins (dispatch never received, agent
not running or not connected, token for the wrong room) and the most reported LiveKit one (a worker
registered under an agent name is only dispatched explicitly, by that exact name). Each cause here
is stated only when the evidence supports it, with the evidence and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Cause:
    key: str  # stable: no_dispatch, agent_name_mismatch, worker_not_running, room_mismatch, ...
    summary: str
    evidence: str
    fix: str

    def line(self) -> str:
        return f"{self.summary} ({self.evidence}); fix: {self.fix}"


@dataclass(frozen=True)
class JoinObservation:
    """What the caller could see by the time it gave up waiting."""

    requested_room: str
    waited_seconds: float
    configured_agent_name: str = ""
    response_room: str | None = None
    response_dispatch_id: str | None = None
    response_agent_name: str | None = None
    token_room: str | None = None
    token_agents: tuple[str, ...] = ()  # roomConfig.agents[].agentName in the token
    # From the LiveKit server API, when the harness was given credentials (None = not looked).
    listed_dispatches: tuple[str, ...] | None = None
    list_error: str | None = None
    non_agent_participants: tuple[str, ...] = field(default_factory=tuple)


def diagnose_agent_join(obs: JoinObservation) -> list[Cause]:
    """Most specific causes first; always at least one."""
    causes: list[Cause] = []
    # LiveKit lists an automatic dispatch with an empty name in every new room: it reaches only
    # workers registered WITHOUT an agent name, so it says nothing about a named agent.
    listed = tuple(name for name in obs.listed_dispatches or () if name)
    only_automatic = bool(obs.listed_dispatches) and not listed
    dispatched_names = set(obs.token_agents) | set(listed)
    if obs.response_agent_name and obs.response_dispatch_id:
        dispatched_names.add(obs.response_agent_name)

    wrong_room = [
        f"{what} {room!r}"
        for what, room in (
            ("token grant", obs.token_room),
            ("response room_name", obs.response_room),
        )
        if room and room != obs.requested_room
    ]
    if wrong_room:
        causes.append(
            Cause(
                "room_mismatch",
                "Token/dispatch for a different room",
                f"requested {obs.requested_room!r}, got {', '.join(wrong_room)}",
                "use the room_name from the request body for both the token and the dispatch",
            )
        )

    if (
        obs.configured_agent_name
        and dispatched_names
        and obs.configured_agent_name not in dispatched_names
    ):
        causes.append(
            Cause(
                "agent_name_mismatch",
                "Agent name mismatch",
                f"livekit_agent_name is {obs.configured_agent_name!r} but the dispatch is for "
                f"{', '.join(sorted(dispatched_names))}",
                "use the same name in livekit_agent_name, the endpoint's dispatch and the "
                "worker's agent_name",
            )
        )

    no_dispatch_seen = not obs.response_dispatch_id and not obs.token_agents and not listed
    if no_dispatch_seen:
        if obs.listed_dispatches is not None:
            evidence = "the LiveKit server lists no dispatch of a named agent for this room"
            if only_automatic:
                evidence += " (only the automatic one, which reaches unnamed workers)"
        else:
            evidence = "no dispatch_id in the token response and no roomConfig.agents in the token"
        causes.append(
            Cause(
                "no_dispatch",
                "No agent dispatch visible: the dispatch system did not receive this room",
                evidence,
                "make the token endpoint dispatch the agent to the requested room_name "
                "(AgentDispatchService.create_dispatch, or roomConfig.agents in the token); "
                "with this kit's token server set DISPATCH_MODE=api and AGENT_NAME",
            )
        )
    elif listed:
        causes.append(
            Cause(
                "worker_not_running",
                "Dispatch exists but no agent took it: the agent is not running or not connected",
                f"dispatch for {', '.join(sorted(set(listed)))} listed on the server, "
                f"nobody joined in {obs.waited_seconds:.0f} s",
                "start a worker registered under exactly that agent name against this LiveKit "
                "server (workers with an agent_name are only dispatched explicitly); check its "
                "logs "
                "for connection errors and whether it is at capacity",
            )
        )
    else:
        if obs.token_agents and not obs.response_dispatch_id:
            causes.append(
                Cause(
                    "token_dispatch_ignored",
                    "Token-embedded dispatch may have been ignored",
                    "the token carries roomConfig.agents; LiveKit applies it only when this join "
                    "creates the room",
                    "dispatch through the server API instead, or make sure nothing creates the "
                    "room before the caller joins",
                )
            )
        evidence = (
            f"a dispatch was reported but no participant joined in {obs.waited_seconds:.0f} s"
        )
        if obs.response_dispatch_id and obs.listed_dispatches is not None:
            evidence += (
                f"; the server no longer lists dispatch {obs.response_dispatch_id} "
                "(dropped, or its job failed)"
            )
        causes.append(
            Cause(
                "agent_not_running",
                "Agent not running or not connected to LiveKit",
                evidence,
                "check the agent's logs for connection errors and that it uses the same LiveKit "
                "server and API key as the token endpoint",
            )
        )
    if obs.list_error:
        causes.append(
            Cause(
                "diagnosis_incomplete",
                "Could not list dispatches on the LiveKit server",
                obs.list_error,
                "check livekit_api_url/livekit_api_key/livekit_api_secret (diagnosis only)",
            )
        )
    return causes
