"""An agent worker for benchmarks: registers under AGENT_NAME, accepts every job, never joins.

The token benchmark's dispatch path needs a worker that takes each job at once: with none,
the token server's dispatch follower (DISPATCH_RETRY=1) dispatches again after 2 s, and every
room would end up with two dispatches. A real worker (sample_agent) would start a job process
and join each room: thousands per second on two cores is not what is measured here. This one
speaks livekit-server's worker protocol (the websocket at /agent, as livekit-agents does) and
answers each availability request "available", so the server records the job as running.

    LIVEKIT_URL=... LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=... AGENT_NAME=... \
        python bench/fake_worker.py

Prints "registered worker <id>" once registered; counts what it was sent every 10 s.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter

import aiohttp
from livekit import api
from livekit.protocol import agent, models

STATUS_SECONDS = 2.5  # livekit-agents reports its load this often
AGENT_NAME_ATTRIBUTE = "lk.agent.name"


def register_message(agent_name: str) -> agent.WorkerMessage:
    msg = agent.WorkerMessage()
    msg.register.type = agent.JT_ROOM
    msg.register.agent_name = agent_name
    msg.register.version = "bench"
    msg.register.allowed_permissions.CopyFrom(
        models.ParticipantPermission(
            can_publish=True, can_subscribe=True, can_publish_data=True, agent=True
        )
    )
    return msg


def accept(request: agent.AvailabilityRequest, agent_name: str) -> agent.WorkerMessage:
    msg = agent.WorkerMessage()
    msg.availability.job_id = request.job.id
    msg.availability.available = True
    msg.availability.participant_identity = f"agent-{request.job.id}"
    msg.availability.participant_name = agent_name
    msg.availability.participant_attributes[AGENT_NAME_ATTRIBUTE] = agent_name
    return msg


async def report_status(ws: aiohttp.ClientWebSocketResponse, seen: Counter[str]) -> None:
    """Tell the server the worker is available (load 0), and print what it was sent."""
    last_print = time.monotonic()
    while True:
        msg = agent.WorkerMessage()
        msg.update_worker.status = agent.WS_AVAILABLE
        msg.update_worker.load = 0.0
        await ws.send_bytes(msg.SerializeToString())
        await asyncio.sleep(STATUS_SECONDS)
        if time.monotonic() - last_print >= 10:
            print(f"sent so far: {dict(seen)}", flush=True)
            last_print = time.monotonic()


async def serve(url: str, key: str, secret: str, agent_name: str) -> None:
    jwt = api.AccessToken(key, secret).with_grants(api.VideoGrants(agent=True)).to_jwt()
    agent_url = url.replace("http", "ws", 1).rstrip("/") + "/agent"
    seen: Counter[str] = Counter()
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            agent_url, headers={"Authorization": f"Bearer {jwt}"}, heartbeat=30
        ) as ws,
    ):
        await ws.send_bytes(register_message(agent_name).SerializeToString())
        first = agent.ServerMessage()
        first.ParseFromString(await ws.receive_bytes())
        print(f"registered worker {first.register.worker_id} as {agent_name!r}", flush=True)
        status = asyncio.create_task(report_status(ws, seen))
        async for frame in ws:
            if frame.type is not aiohttp.WSMsgType.BINARY:
                continue
            msg = agent.ServerMessage()
            msg.ParseFromString(frame.data)
            which = msg.WhichOneof("message") or "?"
            seen[which] += 1
            if which == "availability":
                await ws.send_bytes(accept(msg.availability, agent_name).SerializeToString())
        status.cancel()
    print(f"connection closed; sent: {dict(seen)}", flush=True)


def main() -> int:
    env = os.environ
    asyncio.run(
        serve(
            env["LIVEKIT_URL"], env["LIVEKIT_API_KEY"], env["LIVEKIT_API_SECRET"], env["AGENT_NAME"]
        )
    )
    return 1  # the server closed the connection: the benchmark needs the worker, say so


if __name__ == "__main__":
    sys.exit(main())
