"""Honest capacity: the worker takes exactly AGENT_MAX_CALLS calls at once, through public API only.

livekit-server v1.13.5 offers each job once, to a worker whose last reported status is AVAILABLE
and whose last reported load is under the server's agents `target_load` (0.7); a worker that
refuses, or is reported full, loses the job for good (the token server's dispatch follower,
token_server/dispatch_follow.py, dispatches such a room again).

- **Load is counted in calls** (`call_load`, the worker's `load_fnc`, from the public
  `AgentServer.active_jobs`): AGENT_MAX_CALLS calls in progress reads as FULL_LOAD (0.7, the
  server's `target_load`); each call is FULL_LOAD / AGENT_MAX_CALLS of it.
- **A job accepted but not yet running counts as one call, no more** (`CallSlots`, the
  session's public `on_request` hook). livekit-agents 1.8.9 first screens each job request
  itself: it charges a job it accepted but has not started `load_threshold /
  num_idle_processes`, which is exactly one call when AGENT_IDLE_PROCESSES = AGENT_MAX_CALLS
  (the default). That screen alone is not exact: it adds the load it refreshed (in a thread,
  awaited) to the reservations counted after, so jobs arriving together can all pass it (a
  default 3-call worker without `CallSlots` took 4 of 4 simultaneous dispatches in
  tests/e2e/test_agent_capacity.py). `CallSlots` then decides with its own count of running and
  accepting jobs, taken with no await before the answer, so a worker takes no more than
  AGENT_MAX_CALLS at once. With fewer warm processes than calls the framework's screen is
  stricter than ours (AGENT_MAX_CALLS / AGENT_IDLE_PROCESSES calls per accepted job while none
  runs): jobs beyond the warm processes arriving together are refused, and the dispatch
  follower retries them.
- **The server hears of a change on the framework's own timer.** The framework refreshes the
  load every 0.5 s and sends its status every 2.5 s; it has no public way to send it sooner.
  So a slot freed by a call that ended is hidden from livekit-server for up to ~3 s: a job
  offered meanwhile finds the worker full and is dropped, and the dispatch follower dispatches
  it again (bench/dispatch_reliability.py measures what that costs).
"""

from __future__ import annotations

import logging

from livekit.agents import AgentServer, JobRequest

logger = logging.getLogger("sample_agent")

# livekit-server offers a job only to workers whose reported load is below its agents
# `target_load` (0.7 unless configured); above it the dispatch finds no worker and is dropped
# ("failed to send job request: no servers available" in its log). So all AGENT_MAX_CALLS calls
# in use reads as exactly that: reporting 1.0 for full would stop the offers at 70% of the calls.
FULL_LOAD = 0.7


def effective_load(calls: int, max_calls: int) -> float:
    """The load of `calls` calls (running or accepted) on a worker that takes `max_calls`."""
    return FULL_LOAD * min(1.0, calls / max_calls)


def call_load(server: AgentServer, max_calls: int) -> float:
    """The worker's `load_fnc`: the share of AGENT_MAX_CALLS running, scaled so full is
    FULL_LOAD. Counted, not measured: machine CPU flaps on a small shared machine."""
    return effective_load(len(server.active_jobs), max_calls)


def takes_another_call(calls: int, max_calls: int) -> bool:
    """Whether a worker with `calls` calls running or accepted takes one more."""
    return effective_load(calls, max_calls) < FULL_LOAD


class CallSlots:
    """The worker's answer to each job request: accept while fewer than `max_calls` calls are
    running or accepted-and-starting, else refuse so livekit-server can offer it elsewhere.

    Register `on_request` as the session's `on_request`. A job counts from the moment it is
    accepted until it ends; while it starts it is both accepting and running, so jobs are
    counted by id, once."""

    def __init__(self, server: AgentServer, max_calls: int) -> None:
        self._server = server
        self._max_calls = max_calls
        self._accepting: set[str] = set()

    def calls(self) -> int:
        running = {info.job.id for info in self._server.active_jobs}
        return len(running | self._accepting)

    async def on_request(self, request: JobRequest) -> None:
        if not takes_another_call(self.calls(), self._max_calls):
            logger.info("full; refusing the job", extra={"job_id": request.id})
            await request.reject(terminate=False)  # the server may offer it to another worker
            return
        self._accepting.add(request.id)  # no await since the count: two requests can't both fit
        try:
            await request.accept()  # returns once the job's process has it, or raises
        finally:
            self._accepting.discard(request.id)
