"""Send the named agent into the caller's room through LiveKit's AgentDispatchService.

A worker registered under an agent name is never auto-dispatched: unless something dispatches it,
the platform waits for an agent that never joins. Dispatching here, before the token is returned,
means the agent is on its way by the time the caller connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from livekit import api
from livekit.api.twirp_client import ServerError

from token_server.config import Settings
from token_server.errors import ApiError
from token_server.token_request import TokenRequest


def dispatch_metadata(settings: Settings, request: TokenRequest, identity: str) -> str:
    """The JSON the agent's job receives. Metadata strings travel verbatim: the agent parses them
    (they may be JSON, a Python-style dict as the platform's docs show, or plain text)."""
    meta: dict[str, Any] = {
        "room_name": request.room_name,
        "participant_name": request.participant_name,
        "participant_identity": identity,
        "agent_metadata": settings.agent_metadata,
        "custom": request.custom,
    }
    if request.agent is not None and request.agent.metadata is not None:
        meta["requested_agent_metadata"] = request.agent.metadata
    return json.dumps(meta, separators=(",", ":"))


@dataclass(frozen=True)
class DispatchResult:
    dispatch_id: str
    created: bool  # False when the room already had this agent dispatched (a retried request)


class _RoomLocks:
    """One asyncio.Lock per room while in use, so concurrent retries in this process serialise."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, room: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(room, (asyncio.Lock(), 0))
        self._locks[room] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[room]
            if users == 1:
                del self._locks[room]
            else:
                self._locks[room] = (lock, users - 1)


class Dispatcher:
    """Idempotent CreateDispatch over one long-lived LiveKitAPI client."""

    def __init__(self, settings: Settings, lkapi: api.LiveKitAPI) -> None:
        self._settings = settings
        self._api = lkapi
        self._locks = _RoomLocks()

    async def ensure_dispatched(self, room: str, agent_name: str, metadata: str) -> DispatchResult:
        """Dispatch `agent_name` to `room` unless a dispatch of it is already there.

        The check and the create run under a per-room lock, so retries racing inside one process
        cannot create two agents. Across several worker processes a retry arriving within the same
        few milliseconds could still race; the platform retries sequentially, which this covers.
        """
        try:
            async with asyncio.timeout(self._settings.dispatch_timeout_seconds):
                async with self._locks.hold(room):
                    for existing in await self._list(room):
                        if existing.agent_name == agent_name:
                            return DispatchResult(existing.id, created=False)
                    created = await self._api.agent_dispatch.create_dispatch(
                        api.CreateAgentDispatchRequest(
                            agent_name=agent_name, room=room, metadata=metadata
                        )
                    )
                    return DispatchResult(created.id, created=True)
        except TimeoutError:
            raise ApiError(
                504,
                "livekit_timeout",
                f"LiveKit did not answer the agent dispatch within "
                f"{self._settings.dispatch_timeout_seconds:g}s",
            ) from None
        except ServerError as exc:
            raise ApiError(
                502,
                "dispatch_refused",
                f"LiveKit refused the agent dispatch: {exc.code} {exc.message}".strip(),
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ApiError(
                502,
                "livekit_unreachable",
                f"could not reach LiveKit at {self._settings.livekit_url}: "
                f"{type(exc).__name__}: {exc}",
            ) from None

    async def _list(self, room: str) -> list[api.AgentDispatch]:
        # ListDispatch on a room that does not exist yet stalls ~3 s in livekit-server v1.13 and
        # then fails "no response from servers"; ListRooms answers at once. The platform's rooms
        # are fresh UUIDs, so this is the common path.
        rooms = await self._api.room.list_rooms(api.ListRoomsRequest(names=[room]))
        if not rooms.rooms:
            return []
        return await self._api.agent_dispatch.list_dispatch(room)
