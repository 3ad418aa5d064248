"""Who failed: match what was observed to the causes an agent never joins or a call ends.

The platform's guide lists the usual reasons an agent never joins (dispatch never received, agent
not running or not connected, token for the wrong room) and the most reported LiveKit one (a worker
registered under an agent name is only dispatched explicitly, by that exact name). With the LiveKit
server's API key the harness also sees the room's dispatches and their jobs, which is where
livekit-server v1.13.5 leaves the trace of its own reason:

- no dispatch of the named agent listed: nothing dispatched it to this room;
- a named dispatch with an empty `state.jobs`: no worker took the job. livekit-server offers a job
  once and drops it when no worker is registered under the name or every worker is full;
- a job listed with status `JS_FAILED`: the worker took it and the job failed (its error is given);
- a job listed running but no agent in the room: the worker took it and its agent never joined.

Each cause is stated only when the evidence supports it, with the evidence and the fix, as a
`Cause` whose `key` is stable (reports, tests and `check` key on it; nothing parses its text).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# What livekit-server v1.13.5 logs when it drops a job (verified against its source, and psrpc
# v0.7.2 which it uses for the job request). pkg/agent/client.go, no worker registered under the
# name (its 1-minute cache of registered names says so):
LOG_NO_WORKER_REGISTERED = "not dispatching agent job since no worker is available"
# pkg/service/agentservice.go, workers registered but none available or every one refused:
LOG_NO_WORKER_FOR_JOB = "no worker available to handle job"
ERR_NO_CAPACITY = "no workers with sufficient capacity"
# pkg/agent/client.go, the job request itself failed, with the error (one of the above, or psrpc's):
LOG_JOB_REQUEST_FAILED = "failed to send job request"
ERR_NO_SERVERS = "no servers available (received N responses)"  # every worker >= target_load
ERR_NO_RESPONSE = "no response from servers"  # no node claimed the request within 1 s
ERR_TIMED_OUT = "request timed out"  # the claimed request got no answer within 3 s

JOB_FAILED = "JS_FAILED"

# Cause keys (stable).
ROOM_MISMATCH = "room_mismatch"
AGENT_NAME_MISMATCH = "agent_name_mismatch"
NO_DISPATCH = "no_dispatch"
DISPATCH_NOT_LISTED = "dispatch_not_listed"
NO_WORKER_TOOK_JOB = "no_worker_took_job"
JOB_FAILED_KEY = "job_failed"
AGENT_NEVER_JOINED = "agent_never_joined"
TOKEN_DISPATCH_IGNORED = "token_dispatch_ignored"  # noqa: S105 - a cause key
AGENT_NOT_RUNNING = "agent_not_running"
DIAGNOSIS_INCOMPLETE = "diagnosis_incomplete"
NON_AGENT_JOINED = "non_agent_joined"
# Why a conversation that started failed (stable).
AGENT_LEFT_EARLY = "agent_left_early"
CALLER_CONNECTION_DROPPED = "caller_connection_dropped"
AGENT_NEVER_SPOKE = "agent_never_spoke"
TURNS_UNANSWERED = "turns_unanswered"
CONVERSATION_ERROR = "conversation_error"

# The token endpoint's strict-mode error codes (HTTP 503): no worker took the job in time / the
# worker took it and the job failed.
AGENT_UNAVAILABLE = "agent_unavailable"
AGENT_JOB_FAILED = "agent_job_failed"


@dataclass(frozen=True)
class Cause:
    key: str  # stable: one of the keys above
    summary: str
    evidence: str
    fix: str

    def line(self) -> str:
        return f"{self.summary} ({self.evidence}); fix: {self.fix}"


@dataclass(frozen=True)
class ListedJob:
    """A job in a dispatch's `state.jobs`: a worker accepted it (status as livekit-server lists
    it; v1.13.5 records the state at assignment, so a running job may since have ended)."""

    id: str
    status: str  # JS_PENDING, JS_RUNNING, JS_SUCCESS, JS_FAILED, JS_CANCELLED
    error: str = ""
    participant_identity: str = ""
    worker_id: str = ""


@dataclass(frozen=True)
class ListedDispatch:
    agent_name: str  # "" for the automatic dispatch livekit-server adds to every new room
    id: str = ""
    jobs: tuple[ListedJob, ...] = ()


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
    listed_dispatches: tuple[ListedDispatch, ...] | None = None
    list_error: str | None = None
    # Participants in the room that are not agents ("identity (kind)"): not taken for the agent.
    non_agents: tuple[str, ...] = ()

    @property
    def reported_dispatch(self) -> str | None:
        """What the token answer says was dispatched through the server API: a dispatch id, or
        an agent name when the token carries no roomConfig.agents (an endpoint that creates the
        room with its agent in one call, as this kit's does, has no dispatch id to give)."""
        if self.response_dispatch_id:
            return f"dispatch {self.response_dispatch_id}"
        if self.response_agent_name and not self.token_agents:
            return f"agent {self.response_agent_name!r} dispatched"
        return None


def _names(dispatches: list[ListedDispatch]) -> str:
    return ", ".join(repr(n) for n in sorted({d.agent_name for d in dispatches}))


def _no_worker_took_job(dispatches: list[ListedDispatch], waited: float) -> Cause:
    ids = ", ".join(d.id or "?" for d in dispatches)
    many = f"{len(dispatches)} dispatches" if len(dispatches) > 1 else "dispatch"
    return Cause(
        NO_WORKER_TOOK_JOB,
        "No worker took the job: livekit-server offered it once and dropped it",
        f"{many} {ids} of {_names(dispatches)} listed with an empty state.jobs after "
        f"{waited:.0f} s",
        "either no worker is registered under that agent name (livekit-server logs "
        f"{LOG_NO_WORKER_REGISTERED!r}): start a worker with exactly that agent_name against "
        "this LiveKit server and check its log for 'registered worker'; or every registered "
        f"worker was full (it logs {LOG_NO_WORKER_FOR_JOB!r} with {ERR_NO_CAPACITY!r}, or "
        f"{LOG_JOB_REQUEST_FAILED!r} with {ERR_NO_SERVERS!r} when every worker's load is at or "
        f"above the server's agents target_load, or with {ERR_NO_RESPONSE!r} / {ERR_TIMED_OUT!r} "
        "when no worker answered in time): add workers or calls per worker. livekit-server "
        "never offers that job again: the room needs a new dispatch once a worker is free",
    )


def _job_failed(failed: list[tuple[ListedDispatch, ListedJob]]) -> Cause:
    dispatch, job = failed[0]
    error = job.error or "no error given"
    return Cause(
        JOB_FAILED_KEY,
        "The worker took the job and the job failed",
        f"job {job.id} of dispatch {dispatch.id or '?'} ({dispatch.agent_name!r}) is listed "
        f"{JOB_FAILED}: {error}"
        + (f" (and {len(failed) - 1} more failed job(s))" if len(failed) > 1 else ""),
        f"read the agent worker's log for job {job.id}: its entrypoint raised or its process "
        "crashed ('agent worker left the room' means its agent joined and then left)",
    )


def _agent_never_joined(taken: list[tuple[ListedDispatch, ListedJob]], waited: float) -> Cause:
    dispatch, job = taken[0]
    who = f" as participant {job.participant_identity!r}" if job.participant_identity else ""
    worker = f"worker {job.worker_id}" if job.worker_id else "a worker"
    return Cause(
        AGENT_NEVER_JOINED,
        "The worker took the job but its agent never joined the room",
        f"{worker} took job {job.id} of dispatch {dispatch.id or '?'} ({dispatch.agent_name!r})"
        f"{who}, listed {job.status}; no participant joined in {waited:.0f} s",
        f"read the agent worker's log for job {job.id}: the job process may have failed before "
        "connecting (an exception in prewarm or in the entrypoint before ctx.connect()), be "
        "stuck starting (loading models), or be unable to reach the LiveKit URL it was given",
    )


def diagnose_agent_join(obs: JoinObservation) -> list[Cause]:
    """Most specific causes first; always at least one."""
    # LiveKit lists an automatic dispatch with an empty name in every new room: it reaches only
    # workers registered WITHOUT an agent name, so it says nothing about a named agent.
    named = [d for d in obs.listed_dispatches or () if d.agent_name]
    causes = [c for c in (_room_mismatch(obs), _agent_name_mismatch(obs, named)) if c]
    if named:
        causes.append(_what_became_of_the_jobs(obs, named))
    else:
        causes.extend(_without_a_named_dispatch(obs))
    if obs.non_agents:
        causes.append(_non_agent_joined(obs.non_agents))
    if obs.list_error:
        causes.append(
            Cause(
                DIAGNOSIS_INCOMPLETE,
                "Could not list dispatches on the LiveKit server",
                obs.list_error,
                "check livekit_api_url/livekit_api_key/livekit_api_secret (diagnosis only)",
            )
        )
    return causes


def _non_agent_joined(non_agents: tuple[str, ...]) -> Cause:
    return Cause(
        NON_AGENT_JOINED,
        "A participant that is not an agent joined instead",
        f"in the room: {', '.join(non_agents)}; none of kind agent",
        "the platform takes the first participant to join for your agent "
        "(on_first_participant_joined): dispatch your agent, and keep other participants "
        "(recorders, test clients) out of the room until it has joined",
    )


def _room_mismatch(obs: JoinObservation) -> Cause | None:
    wrong_room = [
        f"{what} {room!r}"
        for what, room in (
            ("token grant", obs.token_room),
            ("response room_name", obs.response_room),
        )
        if room and room != obs.requested_room
    ]
    if not wrong_room:
        return None
    return Cause(
        ROOM_MISMATCH,
        "Token/dispatch for a different room",
        f"requested {obs.requested_room!r}, got {', '.join(wrong_room)}",
        "use the room_name from the request body for both the token and the dispatch",
    )


def _agent_name_mismatch(obs: JoinObservation, named: list[ListedDispatch]) -> Cause | None:
    dispatched = set(obs.token_agents) | {d.agent_name for d in named}
    if obs.response_agent_name and obs.reported_dispatch:
        dispatched.add(obs.response_agent_name)
    expected = obs.configured_agent_name
    if not (expected and dispatched and expected not in dispatched):
        return None
    return Cause(
        AGENT_NAME_MISMATCH,
        "Agent name mismatch",
        f"livekit_agent_name is {expected!r} but the dispatch is for "
        f"{', '.join(sorted(dispatched))}",
        "use the same name in livekit_agent_name, the endpoint's dispatch and the worker's "
        "agent_name",
    )


def _what_became_of_the_jobs(obs: JoinObservation, named: list[ListedDispatch]) -> Cause:
    """The server's own record: judge the dispatches of the expected agent when there are any
    (another name is the mismatch above), by what became of their jobs."""
    mine = [d for d in named if d.agent_name == obs.configured_agent_name] or named
    jobs = [(d, j) for d in mine for j in d.jobs]
    failed = [(d, j) for d, j in jobs if j.status == JOB_FAILED]
    if failed:
        return _job_failed(failed)
    if jobs:
        return _agent_never_joined(jobs, obs.waited_seconds)
    return _no_worker_took_job(mine, obs.waited_seconds)


def _without_a_named_dispatch(obs: JoinObservation) -> list[Cause]:
    """No named dispatch listed (or no listing at all): judge by what the endpoint reported."""
    listing = obs.listed_dispatches
    only_automatic = bool(listing)  # listed, and none of them named
    if listing is not None and obs.reported_dispatch:
        return [
            Cause(
                DISPATCH_NOT_LISTED,
                "The endpoint reported a dispatch this LiveKit server does not list for the room",
                f"the token response says {obs.reported_dispatch}, the server the "
                "caller joined lists no dispatch of a named agent for this room"
                + (" (only the automatic one)" if only_automatic else ""),
                "make the endpoint dispatch on the same LiveKit server its serverUrl points to, "
                "for the requested room_name, and keep the dispatch until the agent joins",
            )
        ]
    if not obs.reported_dispatch and not obs.token_agents:
        if listing is not None:
            evidence = "the LiveKit server lists no dispatch of a named agent for this room"
            if only_automatic:
                evidence += " (only the automatic one, which reaches unnamed workers)"
        else:
            evidence = (
                "no dispatch_id or agent_name in the token response and no roomConfig.agents "
                "in the token"
            )
        return [
            Cause(
                NO_DISPATCH,
                "No agent dispatch visible: the dispatch system did not receive this room",
                evidence,
                "make the token endpoint dispatch the agent to the requested room_name "
                "(AgentDispatchService.create_dispatch, or roomConfig.agents in the token); "
                "with this kit's token server set DISPATCH_MODE=api and AGENT_NAME",
            )
        ]
    return _reported_but_absent(obs)


def _reported_but_absent(obs: JoinObservation) -> list[Cause]:
    """A dispatch was reported (answer or token) and nothing lets us see what became of it."""
    causes: list[Cause] = []
    if obs.token_agents and not obs.response_dispatch_id:
        causes.append(
            Cause(
                TOKEN_DISPATCH_IGNORED,
                "Token-embedded dispatch may have been ignored",
                "the token carries roomConfig.agents; LiveKit applies it only when this join "
                "creates the room",
                "dispatch through the server API instead, or make sure nothing creates the "
                "room before the caller joins",
            )
        )
    causes.append(
        Cause(
            AGENT_NOT_RUNNING,
            "Agent not running or not connected to LiveKit",
            f"a dispatch was reported but no participant joined in {obs.waited_seconds:.0f} s "
            "(give the harness the LiveKit API key and secret to see whether a worker took "
            "the job)",
            "check the agent's logs for connection errors and that it uses the same LiveKit "
            "server and API key as the token endpoint",
        )
    )
    return causes


def token_refusal_causes(status: int, body: bytes | str) -> list[Cause]:
    """Causes read from a token endpoint's non-2xx JSON answer `{"error", "detail"}`, for the
    codes of this kit's strict mode, which name who failed; [] for any other answer (its error
    and detail are shown as they are)."""
    if 200 <= status < 300:
        return []
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    if not isinstance(data, dict):
        return []
    code, detail = data.get("error"), data.get("detail")
    evidence = f"HTTP {status} error={code!r} detail={detail!r}"
    if code == AGENT_UNAVAILABLE:
        return [
            Cause(
                AGENT_UNAVAILABLE,
                "The token endpoint found no worker to take the job in time (strict mode)",
                evidence,
                "start a worker registered under the agent name the endpoint dispatches, or add "
                "workers or calls per worker if they are full; the endpoint's detail says which, "
                "and livekit-server's log says it with "
                f"{LOG_NO_WORKER_REGISTERED!r} (no worker registered) or {ERR_NO_CAPACITY!r} / "
                f"{ERR_NO_SERVERS!r} (workers full)",
            )
        ]
    if code == AGENT_JOB_FAILED:
        return [
            Cause(
                JOB_FAILED_KEY,
                "The worker took the job and the job failed (the token endpoint's strict mode)",
                evidence,
                "read the agent worker's log for the job: its entrypoint raised or its process "
                "crashed",
            )
        ]
    return []


def connect_fix(error: str, source: str) -> str:
    """The fix for a failed WebSocket/WebRTC join, from the error text."""
    lowered = error.lower()
    if "401" in lowered or "unauthorized" in lowered or "invalid token" in lowered:
        return (
            "the LiveKit server rejected the token: sign it with this server's API key and "
            "secret (the token endpoint and the server must share LIVEKIT_API_KEY/SECRET)"
        )
    if "pc connection" in lowered or "ice" in lowered:
        return (
            "signalling worked but media did not: open the server's RTC ports (UDP/TCP) and set "
            "its node IP / external IP so clients can reach it"
        )
    where = (
        "the serverUrl in your token response" if source.startswith("response") else "livekit_url"
    )
    return (
        f"check {where}: the LiveKit server must be running and reachable at that wss:// URL "
        "(include serverUrl in the token response when it differs from livekit_url)"
    )


def conversation_error(exc: BaseException) -> Cause:
    """The caller's own side of the conversation raised: a harness or scenario problem."""
    return Cause(
        CONVERSATION_ERROR,
        f"conversation failed: {type(exc).__name__}: {exc}",
        "the caller's side raised while talking (its speech synthesis, transcription or "
        "publishing), not the agent",
        "run again with -v for the traceback; check the scenario's turns and the harness's "
        "speech models",
    )


def agent_left_early(turns: str) -> Cause:
    return Cause(
        AGENT_LEFT_EARLY,
        f"the agent left after {turns}",
        "the agent's participant left the room before the scenario's last turn",
        "check the agent's logs: it ended the call early (or crashed)",
    )


def caller_connection_dropped(turns: str, reason: str | None, lost_at: float | None) -> Cause:
    when = f" {lost_at:.1f} s into the simulation" if lost_at is not None else ""
    how = (
        "the SDK was still trying to reconnect"
        if reason == "reconnecting"
        else f"rtc disconnect reason {reason}"
    )
    return Cause(
        CALLER_CONNECTION_DROPPED,
        f"the caller's own connection to LiveKit dropped{when} after {turns} ({how})",
        "the caller lost its connection before the agent did anything that ends a call",
        "check that the LiveKit server stayed up (its log, restarts, OOM kills) and the "
        "network between the caller and it; the agent's side is not implicated",
    )


def agent_never_spoke(agent: str | None, turns: str, waited: float) -> Cause:
    return Cause(
        AGENT_NEVER_SPOKE,
        f"the agent joined but never spoke: no speech (or transcription in text mode) from "
        f"{agent} in {turns}, each waited {waited:g} s",
        "the agent's participant is in the room; nothing it said was heard",
        "check that the agent publishes an audio track and speaks (its TTS, and its logs for "
        "errors after joining); in text mode, that it publishes lk.transcription",
    )


def turns_unanswered(unanswered: list[int], waited: float) -> Cause:
    return Cause(
        TURNS_UNANSWERED,
        f"the agent did not answer caller turn(s) {unanswered} within {waited:g} s",
        "the agent spoke in the call but not after these turns",
        "check that the agent subscribes to the caller's audio (or lk.chat in text mode) "
        "and that its turn detection ends the caller's turn",
    )
