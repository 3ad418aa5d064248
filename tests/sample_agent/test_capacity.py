"""The sample agent's capacity arithmetic and its job-request gate (sample_agent/capacity.py).

Pure logic on stand-ins for the framework's public objects (a server's `active_jobs`, a job
request's `id` / `accept()` / `reject()`). The real worker on a real livekit-server is tested in
tests/e2e/test_agent_capacity.py.
"""

from __future__ import annotations

import asyncio
import inspect
from types import SimpleNamespace
from typing import Any

import pytest
from livekit.agents import AgentServer, JobRequest

from sample_agent.agent import build_server, server_options
from sample_agent.capacity import (
    FULL_LOAD,
    CallSlots,
    call_load,
    effective_load,
    takes_another_call,
)
from sample_agent.config import load_settings


def test_a_call_is_a_fixed_share_of_full_load() -> None:
    assert effective_load(0, 3) == 0.0
    assert effective_load(1, 3) == pytest.approx(FULL_LOAD / 3)
    assert effective_load(3, 3) == pytest.approx(FULL_LOAD)
    assert effective_load(7, 3) == pytest.approx(FULL_LOAD)  # never above the server's target
    for max_calls in (1, 2, 3, 10, 50):
        for calls in range(max_calls):
            assert takes_another_call(calls, max_calls)
        assert not takes_another_call(max_calls, max_calls)
        assert not takes_another_call(max_calls + 1, max_calls)


def test_worker_load_counts_calls_not_machine_cpu() -> None:
    def server(jobs: int) -> Any:
        return SimpleNamespace(active_jobs=[object()] * jobs)

    assert call_load(server(0), max_calls=3) == 0.0
    assert call_load(server(2), max_calls=3) == pytest.approx(FULL_LOAD * 2 / 3)
    # full at exactly livekit-server's default agents target_load, never before it: the server
    # offers no job to a worker at or above it
    assert FULL_LOAD == 0.7
    assert call_load(server(49), max_calls=50) < 0.7
    assert call_load(server(3), max_calls=3) == pytest.approx(0.7)
    assert call_load(server(5), max_calls=3) == pytest.approx(0.7)


def test_the_framework_charges_an_accepted_job_one_call_with_the_default_warm_processes() -> None:
    """livekit-agents screens a job request before `on_request` runs, charging each job it
    accepted but has not started `load_threshold / num_idle_processes` while no call runs. With
    the defaults (warm processes = calls) that is exactly one call, so it lets AGENT_MAX_CALLS
    simultaneous jobs through to CallSlots."""
    for env in ({}, {"AGENT_MAX_CALLS": "5"}, {"AGENT_MAX_CALLS": "1", "AGENT_TEXT_ONLY": "1"}):
        settings = load_settings(env)
        options = server_options(settings)
        assert options["num_idle_processes"] == settings.max_calls
        per_job = options["load_threshold"] / options["num_idle_processes"]
        assert per_job == pytest.approx(effective_load(1, settings.max_calls))
        assert options["load_fnc"](SimpleNamespace(active_jobs=[])) == 0.0


class FakeRequest:
    """A job request: `accept()` waits until the test lets the job's process take it."""

    def __init__(self, job_id: str, started: list[str]) -> None:
        self.id = job_id
        self.answer: str | None = None
        self.assigned = asyncio.Event()
        self._started = started

    async def accept(self) -> None:
        self.answer = "accepted"
        await self.assigned.wait()
        self._started.append(self.id)  # the framework's launch: the job is running now

    async def reject(self, *, terminate: bool = True) -> None:
        self.answer = f"rejected terminate={terminate}"


async def _request(slots: CallSlots, job_id: str, started: list[str]) -> FakeRequest:
    request = FakeRequest(job_id, started)
    asyncio.get_running_loop().create_task(slots.on_request(request))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    return request


async def test_jobs_arriving_together_count_one_call_each_and_once_when_running() -> None:
    started: list[str] = []
    server = SimpleNamespace(active_jobs=[])
    slots = CallSlots(server, max_calls=2)  # type: ignore[arg-type]

    first = await _request(slots, "j1", started)
    second = await _request(slots, "j2", started)
    third = await _request(slots, "j3", started)  # both slots are being accepted
    assert (first.answer, second.answer) == ("accepted", "accepted")
    assert third.answer == "rejected terminate=False"  # another worker may take it
    assert slots.calls() == 2

    # j1 starts: it is running and still finishing its accept(): one call, not two
    server.active_jobs = [SimpleNamespace(job=SimpleNamespace(id="j1"))]
    assert slots.calls() == 2
    first.assigned.set()
    await asyncio.sleep(0)
    assert started == ["j1"] and slots.calls() == 2

    # j1's call ends while j2 is still starting: one slot is free again, and only one
    server.active_jobs = []
    assert slots.calls() == 1
    fourth = await _request(slots, "j4", started)
    fifth = await _request(slots, "j5", started)
    assert (fourth.answer, fifth.answer) == ("accepted", "rejected terminate=False")
    for request in (second, fourth):
        request.assigned.set()
    await asyncio.sleep(0)
    assert started == ["j1", "j2", "j4"]


async def test_an_accept_that_fails_frees_its_slot() -> None:
    server = SimpleNamespace(active_jobs=[])
    slots = CallSlots(server, max_calls=1)  # type: ignore[arg-type]

    class Unassigned(FakeRequest):
        async def accept(self) -> None:
            raise TimeoutError("assignment timed out")

    with pytest.raises(TimeoutError):
        await slots.on_request(Unassigned("j1", []))  # type: ignore[arg-type]
    assert slots.calls() == 0
    taken = await _request(slots, "j2", [])
    assert taken.answer == "accepted"


def test_the_server_is_built_with_the_gate_and_the_settings_credentials() -> None:
    settings = load_settings(
        {"LIVEKIT_URL": "ws://lk:7880", "LIVEKIT_API_KEY": "key", "LIVEKIT_API_SECRET": "s" * 32}
    )
    options = server_options(settings)
    assert (options["ws_url"], options["api_key"], options["api_secret"]) == (
        "ws://lk:7880",
        "key",
        "s" * 32,
    )
    assert options["max_retry"] == 16
    assert options["load_threshold"] == FULL_LOAD
    server = build_server(settings)
    assert isinstance(server, AgentServer)
    # the public contract the gate relies on: a job request can be refused without ending it
    assert "terminate" in inspect.signature(JobRequest.reject).parameters
    assert isinstance(inspect.getattr_static(AgentServer, "active_jobs"), property)
