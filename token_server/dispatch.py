"""Send the named agent into the caller's room through LiveKit's AgentDispatchService.

A worker registered under an agent name is never auto-dispatched: unless something dispatches it,
the platform waits for an agent that never joins. Dispatching here, before the token is returned,
means the agent is on its way by the time the caller connects. Whether a worker then takes the
job is `dispatch_follow`'s concern.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from livekit import api
from livekit.api.twirp_client import ServerError

from token_server.config import Settings
from token_server.errors import ApiError
from token_server.livekit_clients import LiveKitClients
from token_server.metrics import DISPATCHES_CREATED, livekit_call
from token_server.room_lock import RoomLock
from token_server.token_request import TokenRequest


def new_request_id() -> str:
    """Fresh per token request: no two requests' dispatch metadata (nor room metadata) are equal,
    even when a retry repeats the body, the identity and the X-Request-ID. That is how
    `Dispatcher` tells what this request made from what an earlier request made."""
    return uuid.uuid4().hex


def dispatch_metadata(
    settings: Settings, request: TokenRequest, identity: str, request_id: str
) -> str:
    """The JSON the agent's job receives. Metadata strings travel verbatim: the agent parses them
    (they may be JSON, a Python-style dict as the platform's docs show, or plain text)."""
    meta: dict[str, Any] = {
        "token_request_id": request_id,
        "room_name": request.room_name,
        "participant_name": request.participant_name,
        "participant_identity": identity,
        "agent_metadata": settings.agent_metadata,
        "custom": request.custom,
    }
    if request.agent is not None and request.agent.metadata is not None:
        meta["requested_agent_metadata"] = request.agent.metadata
    return json.dumps(meta, separators=(",", ":"))


def room_metadata(request_id: str) -> str:
    """The metadata a room this endpoint creates is given. livekit-server sets it only when the
    CreateRoom call builds the room, and answers every CreateRoom with the live room's: finding
    this request's id there says this request created the room, with its agent, in one call."""
    return json.dumps({"token_request_id": request_id}, separators=(",", ":"))


@dataclass(frozen=True)
class DispatchResult:
    # None when this request created the room with the agent: livekit-server does not answer
    # CreateRoom with the room's dispatch ids, and the follower finds it after the answer.
    dispatch_id: str | None
    # True when this request made it; False when the room already had this agent dispatched (a
    # retried request). The dispatch a room is created with is this request's when it carries this
    # request's metadata (unique per request: `token_request_id`).
    created: bool


@contextlib.contextmanager
def livekit_errors(settings: Settings, what: str) -> Iterator[None]:
    """LiveKit API failures as the endpoint's errors: 504 slow, 502 refused or unreachable."""
    try:
        yield
    except TimeoutError:
        raise ApiError(
            504,
            "livekit_timeout",
            f"LiveKit did not answer the {what} within {settings.dispatch_timeout_seconds:g}s",
        ) from None
    except ServerError as exc:
        raise ApiError(
            502,
            "dispatch_refused",
            f"LiveKit refused the {what}: {exc.code} {exc.message}".strip(),
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise ApiError(
            502,
            "livekit_unreachable",
            f"could not reach LiveKit at {settings.livekit_url}: {type(exc).__name__}: {exc}",
        ) from None


# Asked before the server: the dispatch of a room this process is still following, if any.
FollowedLookup = Callable[[str, str], str | None]


class Dispatcher:
    """Idempotent dispatch over one long-lived LiveKitAPI client.

    A new room is created with the agent among its own dispatches (CreateRoom's `agents`):
    livekit-server creates and launches those once, when it creates the room, and never for a room
    already live, so one call dispatches and a second request for the room adds nothing. A room
    created that way also gets no default (unnamed) dispatch, whose job requests, each waiting out
    a 1 s timeout for a worker nobody runs, otherwise queue every named job behind them once rooms
    start at more than ~25 a second. The room's metadata (`room_metadata`) in CreateRoom's answer
    says whether this request built it: then that one call is the whole request path, and the
    dispatch's id is looked up after the answer (`dispatch_follow`), off the request path.
    Otherwise the room existed: ListDispatch finds the agent's dispatch (ours when its metadata is
    this request's, else an earlier request's), and a room that existed without the agent gets a
    CreateDispatch, under the room's lock.

    Every call here costs the same whatever the number of rooms on the server: the room exists
    before ListDispatch (which stalls ~3 s on an unknown room); ListRooms, which scans every room,
    is never used.
    """

    def __init__(self, settings: Settings, clients: LiveKitClients, room_lock: RoomLock) -> None:
        self._settings = settings
        self._clients = clients
        self._api = clients.api
        self._lock = room_lock
        self.followed: FollowedLookup = lambda room, agent_name: None

    async def ensure_dispatched(
        self, room: str, agent_name: str, metadata: str, request_id: str
    ) -> DispatchResult:
        """Dispatch `agent_name` to `room` unless a dispatch of it is already there.

        A new room needs no lock: livekit-server launches its own dispatches once, however many
        requests and replicas create it at the same instant. Only a room that existed without the
        agent takes the room's lock (`room_lock`: in this process, or with REDIS_URL across every
        process and replica sharing that Redis) to look again and create the dispatch, so
        requests arriving at the same instant, wherever they land, create one. When that lock
        cannot be taken, the request answers 503 and nothing is dispatched.
        """
        timeout = self._settings.dispatch_timeout_seconds
        with livekit_errors(self._settings, "agent dispatch"):
            async with asyncio.timeout(timeout):
                followed = self.followed(room, agent_name)
                if followed is not None:
                    return DispatchResult(followed, created=False)
                agent = api.RoomAgentDispatch(agent_name=agent_name, metadata=metadata)
                marker = room_metadata(request_id)
                with livekit_call("create_room"):
                    live = await self._clients.room_creator.create_room(
                        api.CreateRoomRequest(name=room, agents=[agent], metadata=marker)
                    )
                if live.metadata == marker:  # built by this call, with our agent's dispatch
                    DISPATCHES_CREATED.labels("request").inc()
                    return DispatchResult(None, created=True)
                found = await self._find(room, agent_name, metadata)
                if found is not None:
                    return found
        async with self._lock.hold(room):
            with livekit_errors(self._settings, "agent dispatch"):
                async with asyncio.timeout(timeout):  # the lock's TTL outlives this
                    found = await self._find(room, agent_name, metadata)
                    if found is not None:
                        return found
                    return DispatchResult(await self.create(room, agent_name, metadata), True)

    async def _find(self, room: str, agent_name: str, metadata: str) -> DispatchResult | None:
        """The room's dispatch of the agent: ours when it carries this request's metadata."""
        for existing in await self.list(room):
            if existing.agent_name == agent_name:
                ours = existing.metadata == metadata
                if ours:
                    DISPATCHES_CREATED.labels("request").inc()
                return DispatchResult(existing.id, created=ours)
        return None

    async def list(self, room: str) -> list[api.AgentDispatch]:
        """The room's dispatches, with their jobs' states (unknown room: livekit's not_found)."""
        with livekit_call("list_dispatch"):
            return await self._api.agent_dispatch.list_dispatch(room)

    async def find_ours(self, room: str, agent_name: str, metadata: str) -> str | None:
        """The id of the room's dispatch of the agent carrying `metadata` (this request's)."""
        async with asyncio.timeout(self._settings.dispatch_timeout_seconds):
            listed = await self.list(room)
        for existing in listed:
            if existing.agent_name == agent_name and existing.metadata == metadata:
                return str(existing.id)
        return None

    async def delete(self, room: str, dispatch_id: str) -> None:
        """Remove a dispatch (and, in livekit-server, any job it started); gone already is fine."""
        async with asyncio.timeout(self._settings.dispatch_timeout_seconds):
            try:
                with livekit_call("delete_dispatch"):
                    await self._api.agent_dispatch.delete_dispatch(dispatch_id, room)
            except ServerError as exc:
                if exc.code != "not_found":
                    raise

    async def create(self, room: str, agent_name: str, metadata: str, again: bool = False) -> str:
        """A new dispatch, which livekit-server offers to the workers afresh; `again` when it
        replaces one whose job no worker took."""
        with livekit_call("create_dispatch"):
            created = await self._api.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(agent_name=agent_name, room=room, metadata=metadata)
            )
        DISPATCHES_CREATED.labels("again" if again else "request").inc()
        return str(created.id)
