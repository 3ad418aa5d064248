"""Honest capacity: the worker takes a call whenever it has a free slot, and says so promptly.

livekit-server v1.13.5 offers each job once, to a worker whose last reported status is AVAILABLE
and whose last reported load is under the server's agents `target_load` (0.7); a worker that
refuses, or is reported full, loses the job for good. So two numbers must be right at every
instant: the worker's own count when it answers a job request, and the server's copy of it.

- **Load is counted in calls.** AGENT_MAX_CALLS calls in progress reads as FULL_LOAD (0.7, the
  server's `target_load`); each call is FULL_LOAD / AGENT_MAX_CALLS of it (`call_load`).
- **A job accepted but not yet running counts as one call, no more.** livekit-agents 1.8.9
  guesses a reserved job's load: with no call running it charges `load_threshold /
  num_idle_processes`, so with one warm process a single reservation reads as full and a second
  job request arriving at the same instant is refused. We know a call's load exactly, so we
  count reservations with it (`effective_load`).
- **The server hears of a change at once.** The framework pushes its status every 2.5 s; a slot
  freed by a call that ended would stay hidden that long (and every job offered meanwhile goes
  elsewhere or nowhere). We push the status as soon as a call starts or ends.

The last two need framework internals: they live in `count_calls_exactly`, the one function here
that touches them, and tests/sample_agent/test_capacity.py fails if the framework changes their
shape.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from livekit.agents import AgentServer

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


def takes_another_call(running: int, reserved: int, max_calls: int) -> bool:
    """What the worker answers a job request with (the framework: effective load < threshold)."""
    return effective_load(running + reserved, max_calls) < FULL_LOAD


def count_calls_exactly(server: AgentServer, max_calls: int) -> None:
    """Make `server` count accepted-not-started jobs as one call each and push its status to
    livekit-server the moment a call starts or ends.

    THE ONLY CODE THAT TOUCHES livekit-agents INTERNALS (1.8.9; tests/sample_agent/test_capacity.py
    checks each one still exists with the shape used here):
    - `AgentServer._get_effective_load()`: the load the worker answers job requests and builds
      its status with; replaced on this instance by one that counts reservations as calls.
    - `AgentServer._reserved_slots`: jobs it said "available" to that are not running yet.
    - `AgentServer._proc_pool` ("process_job_launched" / "process_closed" events): a call
      started / its process is gone (the framework itself listens to both, to report job status).
    - `AgentServer._worker_load` (the last `load_fnc` result, sent as the status's load) and
      `_update_worker_status()`: what the framework's own 0.5 s and 2.5 s timers set and send.
      Set inline (not via its thread-pool `_refresh_worker_load`), so the status is queued in
      the same loop turn the call's process is gone, before anything else can observe the free
      slot. The framework drops statuses while it is (re)connecting and sends one itself right
      after registering, computed with the same two functions.
    """

    def counted_load() -> float:
        return effective_load(len(server.active_jobs) + server._reserved_slots, max_calls)

    server._get_effective_load = counted_load  # type: ignore[method-assign]
    pending: set[asyncio.Task[None]] = set()

    async def push_status() -> None:
        try:
            server._worker_load = call_load(server, max_calls)
            await server._update_worker_status()
        except Exception:  # closing, or disconnected: the next status the framework sends wins
            logger.debug("worker status push skipped", exc_info=True)

    def calls_changed(*_: Any) -> None:
        task = asyncio.get_running_loop().create_task(push_status())
        pending.add(task)
        task.add_done_callback(pending.discard)

    @server.on("worker_started")  # run() built a new pool; no job request has been read yet
    def _hook_pool() -> None:
        server._proc_pool.on("process_job_launched", calls_changed)
        server._proc_pool.on("process_closed", calls_changed)
