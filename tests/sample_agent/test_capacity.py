"""Honest capacity of the sample agent worker (sample_agent/capacity.py, issue 9 part 3).

livekit-server v1.13.5 offers each job once; a worker that refuses it, or that the server
believes full, loses it for good. The end-to-end tests here dispatch with the server API, one
dispatch per room and no retry, so a job that is taken was taken by the worker itself:
- two dispatches at the same instant to a worker started with no AGENT_* tuning: both taken;
- on a one-call worker, a dispatch sent the moment the previous call's job ended: taken;
- livekit-server SIGKILLed mid-call and restarted on the same ports: the worker ends the call
  whose room is gone and takes new calls once it has registered again.
The unit tests pin the arithmetic (the same for the default voice worker as for the text-only
one the end-to-end tests run, to spare the shared 2 cores) and the framework internals it uses.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from livekit import api, rtc
from livekit.agents import AgentServer
from livekit.agents.ipc import proc_pool

from local_stack import AgentWorker, LiveKitServer, LocalStack
from sample_agent.agent import build_server
from sample_agent.capacity import FULL_LOAD, effective_load, takes_another_call
from sample_agent.config import load_settings

TAKEN_WITHIN = 30.0  # generous: a job is taken within a second or two here
JOINED_WITHIN = 60.0
RECOVERED_WITHIN = 90.0  # before the fix the dead call held the worker for ~5 minutes


# --- the arithmetic ---------------------------------------------------------------------------


def test_a_call_is_a_fixed_share_of_full_load() -> None:
    assert effective_load(0, 3) == 0.0
    assert effective_load(1, 3) == pytest.approx(FULL_LOAD / 3)
    assert effective_load(3, 3) == pytest.approx(FULL_LOAD)
    assert effective_load(7, 3) == pytest.approx(FULL_LOAD)  # never above the server's target
    # calls running or accepted-not-started count alike: max_calls of them, never more
    for max_calls in (1, 2, 3, 10, 50):
        for calls in range(max_calls):
            assert takes_another_call(calls, 0, max_calls)
            assert takes_another_call(0, calls, max_calls)
            assert takes_another_call(calls // 2, calls - calls // 2, max_calls)
        assert not takes_another_call(max_calls, 0, max_calls)
        assert not takes_another_call(0, max_calls, max_calls)


def _unstarted(server: AgentServer, running: int, reserved: int) -> AgentServer:
    """`server` as its run() leaves it, with `running` calls and `reserved` accepted jobs."""
    server._proc_pool = SimpleNamespace(  # type: ignore[assignment]
        processes=[SimpleNamespace(running_job=object()) for _ in range(running)]
    )
    server._reserved_slots = reserved
    server._devmode = False
    return server


@pytest.mark.parametrize("env", [{}, {"AGENT_TEXT_ONLY": "1"}], ids=["voice", "text-only"])
def test_a_default_worker_accepts_max_calls_jobs_arriving_at_once(env: dict[str, str]) -> None:
    settings = load_settings(env)
    assert settings.max_calls == 3
    assert settings.num_idle_processes == settings.max_calls  # warm processes follow max calls
    for running in range(settings.max_calls + 1):
        for reserved in range(settings.max_calls + 1 - running):
            server = _unstarted(build_server(settings), running, reserved)
            # the framework's own decision, made with the load we give it
            assert server._is_available() == (running + reserved < settings.max_calls)
    # the framework's guess (load_threshold / num_idle_processes per accepted job) would have
    # refused the second of two jobs arriving together with one warm process:
    one_warm = load_settings({**env, "AGENT_IDLE_PROCESSES": "1"})
    assert _unstarted(build_server(one_warm), 0, 1)._is_available()
    assert _unstarted(build_server(one_warm), 0, 2)._is_available()
    assert not _unstarted(build_server(one_warm), 0, 3)._is_available()


def test_framework_internals_have_the_shape_capacity_uses() -> None:
    """count_calls_exactly touches these livekit-agents internals; fail here, not in production,
    when an upgrade changes them."""
    run = inspect.getsource(AgentServer.run)
    for assigned in ("self._reserved_slots", "self._worker_load", "self._proc_pool"):
        assert f"{assigned}:" in run or f"{assigned} =" in run, assigned
    assert 'self.emit("worker_started")' in run
    assert run.index("self._proc_pool =") < run.index('self.emit("worker_started")')
    # the decision and the status both come from _get_effective_load, taking no argument
    assert list(inspect.signature(AgentServer._get_effective_load).parameters) == ["self"]
    assert "self._get_effective_load()" in inspect.getsource(AgentServer._is_available)
    status = inspect.getsource(AgentServer._update_worker_status)
    assert inspect.iscoroutinefunction(AgentServer._update_worker_status)
    assert list(inspect.signature(AgentServer._update_worker_status).parameters) == ["self"]
    assert "self._get_effective_load()" in status and "load=self._worker_load" in status
    # the pool's events for a call started and a job process gone
    pool = inspect.getsource(proc_pool.ProcPool)
    assert 'self.emit("process_job_launched", proc)' in pool
    assert 'self.emit("process_closed", proc)' in pool
    assert isinstance(inspect.getattr_static(AgentServer, "active_jobs"), property)


async def test_the_status_is_pushed_the_moment_a_call_starts_or_ends() -> None:
    server = build_server(load_settings({"AGENT_MAX_CALLS": "1"}))
    pool = rtc.EventEmitter[str]()
    pool.processes = []  # type: ignore[attr-defined]
    server._proc_pool = pool  # type: ignore[assignment]
    server._reserved_slots = 0
    server._devmode = False
    pushed: list[tuple[float, float]] = []

    async def update_worker_status() -> None:  # what the status message would carry
        pushed.append((server._worker_load, server._get_effective_load()))

    server._update_worker_status = update_worker_status  # type: ignore[method-assign]
    server.emit("worker_started")
    proc = SimpleNamespace(running_job=object())
    pool.processes.append(proc)  # type: ignore[attr-defined]
    pool.emit("process_job_launched", proc)
    await asyncio.sleep(0)
    assert pushed == [(pytest.approx(FULL_LOAD), pytest.approx(FULL_LOAD))]
    pool.processes.remove(proc)  # type: ignore[attr-defined]
    pool.emit("process_closed", proc)
    await asyncio.sleep(0)  # one loop turn: no thread hop, no timer
    assert pushed[-1] == (0.0, 0.0)


# --- the real stack ---------------------------------------------------------------------------


def _token(lk: LiveKitServer, room: str, identity: str) -> str:
    return (
        api.AccessToken(lk.api_key, lk.api_secret)
        .with_identity(identity)
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .to_jwt()
    )


async def _join(lk: LiveKitServer, room: str) -> rtc.Room:
    caller = rtc.Room()
    await caller.connect(lk.url, _token(lk, room, f"caller-{uuid.uuid4().hex[:6]}"))
    return caller


async def _leave(caller: rtc.Room) -> None:
    try:
        await asyncio.wait_for(caller.disconnect(), 10)
    except Exception:  # the server may be gone (the restart test): nothing left to leave
        pass


async def _eventually(what: str, within: float, probe: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = probe()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {within:.0f} s")
        await asyncio.sleep(0.1)


def _agent_in(caller: rtc.Room) -> bool:
    return any(
        p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        for p in caller.remote_participants.values()
    )


async def _taken(lkapi: api.LiveKitAPI, room: str, agent_name: str) -> bool:
    dispatches = await lkapi.agent_dispatch.list_dispatch(room)
    return any(d.agent_name == agent_name and d.state.jobs for d in dispatches)


def _worker_calls(worker: AgentWorker) -> int:
    info = httpx.get(worker.health_url + "worker", timeout=5).json()
    return int(info.get("active_jobs", 0))  # protobuf JSON leaves out a zero


def _dispatch(lkapi: api.LiveKitAPI, room: str, agent_name: str) -> Any:
    return lkapi.agent_dispatch.create_dispatch(
        api.CreateAgentDispatchRequest(agent_name=agent_name, room=room)
    )


async def _one_call(
    lk: LiveKitServer, lkapi: api.LiveKitAPI, worker: AgentWorker, room: str
) -> None:
    """A caller joins `room`, ONE dispatch names the worker: the job must be taken and the
    agent must join; then the caller leaves and the job ends (the worker's own count says)."""
    caller = await _join(lk, room)
    try:
        await _dispatch(lkapi, room, worker.agent_name)
        await _eventually(
            f"taken ({room})", TAKEN_WITHIN, lambda: _taken(lkapi, room, worker.agent_name)
        )
        await _eventually(f"joined ({room})", JOINED_WITHIN, lambda: _agent_in(caller))
    finally:
        await _leave(caller)
    await _eventually(f"the job ended ({room})", JOINED_WITHIN, lambda: _worker_calls(worker) == 0)


@pytest.fixture
async def lkapi_for() -> AsyncIterator[Callable[[LiveKitServer], api.LiveKitAPI]]:
    made: list[api.LiveKitAPI] = []

    def make(lk: LiveKitServer) -> api.LiveKitAPI:
        made.append(api.LiveKitAPI(lk.http_url, lk.api_key, lk.api_secret))
        return made[-1]

    yield make
    for lkapi in made:
        await lkapi.aclose()


@pytest.mark.e2e
async def test_two_dispatches_at_the_same_instant_both_get_an_agent_from_a_default_worker(
    livekit_server: LiveKitServer,
    tmp_path: Path,
    lkapi_for: Callable[[LiveKitServer], api.LiveKitAPI],
) -> None:
    name = f"cap-default-{uuid.uuid4().hex[:6]}"
    rooms = [f"{name}-{i}" for i in range(2)]
    lkapi = lkapi_for(livekit_server)
    with LocalStack(log_dir=tmp_path) as own:
        # no AGENT_MAX_CALLS / AGENT_IDLE_PROCESSES: the defaults; text-only spares the models
        own.start_agent(livekit_server, name, env={"AGENT_TEXT_ONLY": "1"})
        callers = [await _join(livekit_server, room) for room in rooms]
        try:
            await asyncio.gather(*(_dispatch(lkapi, room, name) for room in rooms))
            for room, caller in zip(rooms, callers, strict=True):
                taken = functools.partial(_taken, lkapi, room, name)
                await _eventually(f"taken ({room})", TAKEN_WITHIN, taken)
                agent_in = functools.partial(_agent_in, caller)
                await _eventually(f"joined ({room})", JOINED_WITHIN, agent_in)
        finally:
            for caller in callers:
                await _leave(caller)


@pytest.mark.e2e
async def test_a_call_that_ends_frees_its_slot_for_the_next_dispatch_at_once(
    livekit_server: LiveKitServer,
    tmp_path: Path,
    lkapi_for: Callable[[LiveKitServer], api.LiveKitAPI],
) -> None:
    name = f"cap-one-{uuid.uuid4().hex[:6]}"
    lkapi = lkapi_for(livekit_server)
    with LocalStack(log_dir=tmp_path) as own:
        worker = own.start_agent(
            livekit_server, name, env={"AGENT_TEXT_ONLY": "1", "AGENT_MAX_CALLS": "1"}
        )
        for i in range(3):  # calls back to back, each dispatched as the previous job ends
            await _one_call(livekit_server, lkapi, worker, f"{name}-{i}")


@pytest.mark.e2e
async def test_after_livekit_server_is_killed_and_restarted_the_worker_takes_new_calls(
    tmp_path: Path,
    lkapi_for: Callable[[LiveKitServer], api.LiveKitAPI],
) -> None:
    name = f"cap-restart-{uuid.uuid4().hex[:6]}"
    with LocalStack(log_dir=tmp_path) as own:
        lk = own.start_livekit()
        # one call fills it: a call that outlived its room would refuse every new one
        worker = own.start_agent(lk, name, env={"AGENT_TEXT_ONLY": "1", "AGENT_MAX_CALLS": "1"})
        lkapi = lkapi_for(lk)
        room = f"{name}-before"
        caller = await _join(lk, room)
        await _dispatch(lkapi, room, name)
        await _eventually("joined before the kill", JOINED_WITHIN, lambda: _agent_in(caller))
        assert _worker_calls(worker) == 1

        lk.process.signal(signal.SIGKILL)
        await _leave(caller)  # the simulation is over for the caller
        lk = own.restart_livekit(lk)
        await _eventually(
            "registered again",
            RECOVERED_WITHIN,
            lambda: worker.process.log_text().count("registered worker") >= 2,
        )
        await _eventually(
            "the dead call ended", RECOVERED_WITHIN, lambda: _worker_calls(worker) == 0
        )

        lkapi = lkapi_for(lk)
        for i in range(2):  # single dispatches, back to back
            await _one_call(lk, lkapi, worker, f"{name}-after-{i}")
