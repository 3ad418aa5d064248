"""Every simulation gets its agent: the token endpoint follows each dispatch and dispatches again
until a worker takes the job (livekit-server offers a job once and drops it when no worker can take
it at that instant).

Real livekit-server, real token endpoint, real `sample-agent` workers (text-only: the same worker,
capacity and dispatch path as the spoken one, without loading speech models on 2 shared cores),
real rtc callers through the client harness. Each test owns its stack, so it may start the worker
late, kill it, or kill and restart livekit-server.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import statistics
import time

import httpx
import pytest
from livekit import api, rtc

from client_harness.config import HarnessConfig, stack_config
from local_stack import AgentWorker, LiveKitServer, LocalStack, TokenServer
from tests.e2e.served import assert_all_served, simulate

pytestmark = pytest.mark.e2e

AGENT = "reliability-agent"


def start_worker(stack: LocalStack, livekit: LiveKitServer, **env: str) -> AgentWorker:
    """A text-only sample agent with the kit's default capacity settings unless overridden."""
    return stack.start_agent(
        livekit,
        AGENT,
        env={"AGENT_PROVIDER": "offline", "AGENT_TEXT_ONLY": "1", **env},
        timeout=180.0,
    )


def start_endpoint(stack: LocalStack, livekit: LiveKitServer, **env: str) -> TokenServer:
    return stack.start_token_server(livekit, env={"AGENT_NAME": AGENT, **env})


def config_for(
    endpoint: TokenServer, livekit: LiveKitServer, join_timeout: float = 90
) -> HarnessConfig:
    return stack_config(
        endpoint, livekit, livekit_agent_name=AGENT, agent_join_timeout=join_timeout
    )


def fates(endpoint: TokenServer) -> dict[str, dict[str, object]]:
    """The token server's `dispatch_fate` log lines, by room."""
    found: dict[str, dict[str, object]] = {}
    for line in endpoint.process.log_text().splitlines():
        start = line.find('{"event":"dispatch_fate"')
        if start >= 0:
            record = json.loads(line[start:])
            found[str(record["room"])] = record
    return found


async def wait_fates(endpoint: TokenServer, rooms: set[str], within: float = 15) -> dict:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = fates(endpoint)
        if rooms <= found.keys():
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"no dispatch_fate line for {rooms - fates(endpoint).keys()}")


async def named_dispatches(livekit: LiveKitServer, room: str) -> list[api.AgentDispatch]:
    async with api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as lkapi:
        await lkapi.room.create_room(api.CreateRoomRequest(name=room))  # ListDispatch needs it
        return [d for d in await lkapi.agent_dispatch.list_dispatch(room) if d.agent_name]


async def test_bursts_of_two_and_five_on_one_default_worker(own_stack: LocalStack) -> None:
    livekit = own_stack.start_livekit()
    endpoint = start_endpoint(own_stack, livekit)
    start_worker(own_stack, livekit)
    config = config_for(endpoint, livekit)

    two = await simulate(config, 2, 2)
    assert_all_served(two, AGENT)
    # Five at once on a worker that takes fewer calls: the rest wait until a slot frees.
    five = await simulate(config, 5, 5)
    assert_all_served(five, AGENT)

    found = await wait_fates(endpoint, {r.room_name for r in two + five})
    assert {f["fate"] for f in found.values()} == {"taken"}


async def test_six_calls_back_to_back(own_stack: LocalStack) -> None:
    livekit = own_stack.start_livekit()
    endpoint = start_endpoint(own_stack, livekit)
    start_worker(own_stack, livekit)
    results = await simulate(config_for(endpoint, livekit), 6, 1)
    assert_all_served(results, AGENT)


async def test_callers_arriving_before_the_worker_starts(own_stack: LocalStack) -> None:
    livekit = own_stack.start_livekit()
    endpoint = start_endpoint(own_stack, livekit)
    run = asyncio.create_task(simulate(config_for(endpoint, livekit), 3, 3))
    await asyncio.sleep(3)  # the three token requests are answered, no worker is registered
    assert not run.done()
    await asyncio.to_thread(start_worker, own_stack, livekit)
    results = await run
    assert_all_served(results, AGENT)
    found = await wait_fates(endpoint, {r.room_name for r in results})
    # none was taken on the first offer: there was no worker to take it
    assert all(int(f["dispatches"]) > 1 for f in found.values()), found


class Caller:
    """An rtc caller that joins through the token endpoint and stays until told to leave."""

    def __init__(self, endpoint: TokenServer, room: str) -> None:
        self.endpoint = endpoint
        self.room_name = room
        self.room = rtc.Room()
        self.agent_joined = asyncio.Event()
        self.room.on("participant_connected", self._on_participant)

    def _on_participant(self, p: rtc.RemoteParticipant) -> None:
        if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            self.agent_joined.set()

    async def join(self) -> None:
        async with httpx.AsyncClient() as client:
            resp = await client.post(
                self.endpoint.endpoint,
                json={"room_name": self.room_name, "participant_name": "simulated_user"},
            )
        resp.raise_for_status()
        body = resp.json()
        await self.room.connect(body["serverUrl"], body["token"])
        for p in self.room.remote_participants.values():
            self._on_participant(p)

    async def leave(self) -> None:
        await self.room.disconnect()


async def test_worker_killed_while_simulations_wait_then_restarted(
    own_stack: LocalStack,
) -> None:
    livekit = own_stack.start_livekit()
    endpoint = start_endpoint(own_stack, livekit)
    worker = start_worker(own_stack, livekit, AGENT_MAX_CALLS="1")
    busy = Caller(endpoint, "busy-room")
    await busy.join()
    await asyncio.wait_for(busy.agent_joined.wait(), 60)  # the worker's one slot is taken

    waiting = asyncio.create_task(simulate(config_for(endpoint, livekit), 2, 2))
    await asyncio.sleep(3)
    assert not waiting.done()  # both wait for a slot
    worker.process.signal(signal.SIGKILL)
    own_stack.stop(worker.process)
    await asyncio.sleep(2)
    await asyncio.to_thread(start_worker, own_stack, livekit, AGENT_MAX_CALLS="1")
    results = await waiting
    assert_all_served(results, AGENT)
    await busy.leave()


async def test_livekit_server_killed_mid_call_and_restarted(own_stack: LocalStack) -> None:
    livekit = own_stack.start_livekit()
    endpoint = start_endpoint(own_stack, livekit)
    worker = start_worker(own_stack, livekit)
    caller = Caller(endpoint, "doomed-room")
    await caller.join()
    await asyncio.wait_for(caller.agent_joined.wait(), 60)

    livekit.process.signal(signal.SIGKILL)
    livekit = await asyncio.to_thread(own_stack.restart_livekit, livekit)
    # the worker registers with the restarted server (it retries with backoff)
    registrations = worker.process.log_text().count("registered worker")
    await asyncio.to_thread(
        worker.process.wait_until,
        lambda: worker.process.log_text().count("registered worker") > registrations,
        90,
        "registered again",
    )
    config = config_for(endpoint, livekit)
    assert_all_served(await simulate(config, 3, 1), AGENT)  # back to back
    assert_all_served(await simulate(config, 3, 3), AGENT)  # a burst
    await caller.leave()


async def test_strict_mode_answers_503_naming_why_when_no_worker_takes_the_job(
    own_stack: LocalStack,
) -> None:
    livekit = own_stack.start_livekit()
    endpoint = start_endpoint(
        own_stack, livekit, DISPATCH_STRICT="1", DISPATCH_STRICT_TIMEOUT_SECONDS="2"
    )
    room = "strict-no-worker"
    async with httpx.AsyncClient(timeout=30) as client:
        resp = await client.post(endpoint.endpoint, json={"room_name": room})
    assert resp.status_code == 503
    body = resp.json()
    assert body["error"] == "agent_unavailable"
    assert AGENT in body["detail"] and "no worker took the job" in body["detail"]
    assert "token" not in body
    assert resp.headers["retry-after"]
    # nothing left behind: no dispatch waits for a worker in a room nobody has a token for
    assert await named_dispatches(livekit, room) == []

    # With a worker, the same endpoint answers once the job is taken.
    start_worker(own_stack, livekit)
    async with httpx.AsyncClient(timeout=30) as client:
        resp = await client.post(endpoint.endpoint, json={"room_name": "strict-with-worker"})
    assert resp.status_code == 200, resp.text
    dispatches = await named_dispatches(livekit, "strict-with-worker")
    assert len(dispatches) == 1
    # taken: the job is listed on the dispatch, or (livekit-server lists it up to ~5 s late just
    # after a worker registers) the agent is already in the room
    if not dispatches[0].state.jobs:
        async with api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as lkapi:
            listed = await lkapi.room.list_participants(
                api.ListParticipantsRequest(room="strict-with-worker")
            )
        kinds = [p.kind for p in listed.participants]
        assert kinds == [api.ParticipantInfo.Kind.AGENT], kinds


async def test_a_caller_that_hangs_up_before_the_answer_leaves_no_dispatch(
    own_stack: LocalStack,
) -> None:
    livekit = own_stack.start_livekit()
    endpoint = start_endpoint(own_stack, livekit)
    port = int(endpoint.base_url.rsplit(":", 1)[1])
    rooms = [f"hangup-{i}" for i in range(5)]
    for room in rooms:
        body = json.dumps({"room_name": room}).encode()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(
                b"POST /livekit/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
    await asyncio.sleep(3)
    assert endpoint.process.alive()
    for room in rooms:
        assert await named_dispatches(livekit, room) == [], room
    assert "Traceback" not in endpoint.process.log_text()


async def test_token_latency_is_flat_with_thirty_thousand_rooms(own_stack: LocalStack) -> None:
    """Same run, two servers side by side: one empty, one holding 30,000 rooms."""
    empty_server, full_server = own_stack.start_livekit(), own_stack.start_livekit()
    # a generous API timeout: a rare multi-second stall of one call is a slow sample, not a 504
    quiet = {"DISPATCH_RETRY": "0", "DISPATCH_TIMEOUT_SECONDS": "30"}
    to_empty = start_endpoint(own_stack, empty_server, **quiet)
    to_full = start_endpoint(own_stack, full_server, **quiet)
    async with api.LiveKitAPI(
        full_server.http_url, full_server.api_key, full_server.api_secret
    ) as lkapi:
        slots = asyncio.Semaphore(32)

        async def create(i: int) -> None:
            async with slots:
                await lkapi.room.create_room(api.CreateRoomRequest(name=f"filler-{i}"))

        await asyncio.gather(*(create(i) for i in range(30_000)))
        assert len((await lkapi.room.list_rooms(api.ListRoomsRequest())).rooms) >= 30_000

    samples: dict[str, list[float]] = {"empty": [], "full": []}
    async with httpx.AsyncClient(timeout=30) as client:
        for i in range(200):  # interleaved, so machine noise hits both alike
            for name, endpoint in (("empty", to_empty), ("full", to_full)):
                started = time.perf_counter()
                resp = await client.post(endpoint.endpoint, json={"room_name": f"probe-{i}"})
                samples[name].append(time.perf_counter() - started)
                assert resp.status_code == 200, resp.text
    empty, full = statistics.median(samples["empty"]), statistics.median(samples["full"])
    print(f"token request median: empty server {empty * 1e3:.2f} ms, 30k rooms {full * 1e3:.2f} ms")
    # ListRooms made this ~10x at this size (23 ms against 0.7 ms); generous against noise
    assert full / empty < 1.5, (empty, full)


async def test_hundreds_of_rooms_followed_at_once_stay_bounded_and_stop_cleanly(
    own_stack: LocalStack,
) -> None:
    """300 rooms waiting for an agent that never comes (no worker): the endpoint keeps answering,
    its extra dispatches stay within DISPATCH_RETRY_RATE, and stopping it ends every follow."""
    livekit = own_stack.start_livekit()
    endpoint = start_endpoint(own_stack, livekit, DISPATCH_RETRY_RATE="20")
    rooms = [f"crowd-{i}" for i in range(300)]
    async with httpx.AsyncClient(timeout=30) as client:
        slots = asyncio.Semaphore(16)

        async def ask(room: str) -> int:
            async with slots:
                return (await client.post(endpoint.endpoint, json={"room_name": room})).status_code

        assert set(await asyncio.gather(*(ask(r) for r in rooms))) == {200}
        started = time.monotonic()
        await asyncio.sleep(6)
        # still answering promptly-enough while following them all
        resp = await client.post(endpoint.endpoint, json={"room_name": "one-more"})
        assert resp.status_code == 200
    elapsed = time.monotonic() - started + 1  # the last requests' first looks
    # each room's first dispatch comes with its CreateRoom; every CreateDispatch is an extra one
    extra = livekit.process.log_text().count("AgentDispatchService.CreateDispatch")
    assert 0 < extra <= 20 * (elapsed + 2), (extra, elapsed)

    endpoint.process.signal(signal.SIGTERM)
    await asyncio.to_thread(endpoint.process.proc.wait, 30)
    found = fates(endpoint)
    assert {found[r]["fate"] for r in rooms} == {"shutdown"}
    assert "Traceback" not in endpoint.process.log_text()


async def test_a_second_agent_dispatched_into_a_served_room_leaves_at_once(
    own_stack: LocalStack,
) -> None:
    """Two dispatches of one room both taken (what a dispatcher retrying a slow-to-show offer can
    cause): the agent that came second sees the first and leaves before greeting."""
    livekit = own_stack.start_livekit()
    worker = start_worker(own_stack, livekit)
    room = "served-room"
    async with api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as lkapi:

        async def agents() -> list[str]:
            listed = await lkapi.room.list_participants(api.ListParticipantsRequest(room=room))
            return [
                p.identity for p in listed.participants if p.kind == api.ParticipantInfo.Kind.AGENT
            ]

        async def wait_agents(count: int) -> list[str]:
            for _ in range(300):  # up to ~60 s
                found = await agents()
                if len(found) == count:
                    return found
                await asyncio.sleep(0.2)
            raise AssertionError(f"{count} agent(s) expected in the room, found {found}")

        request = api.CreateAgentDispatchRequest(agent_name=AGENT, room=room)
        await lkapi.agent_dispatch.create_dispatch(request)
        first = await wait_agents(1)
        await lkapi.agent_dispatch.create_dispatch(request)
        await asyncio.to_thread(
            worker.process.wait_until,
            lambda: "an agent of this name is already in the room" in worker.process.log_text(),
            60,
            "logging that the second agent leaves",
        )
        assert await wait_agents(1) == first
