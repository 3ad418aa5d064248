"""The endpoint's LiveKit server API clients, over one aiohttp session for the app's lifetime.

LiveKit's SDK signs a fresh JWT for every call it makes with a key pair (`AccessToken.to_jwt`,
its claims rebuilt with `dataclasses.asdict` each time): at ~600 new rooms a second, signing was
~15% of the endpoint's samples under py-spy, ~6% for CreateRoom's alone. CreateRoom, the one call
on a new room's request path, needs only the `room_create` grant, the same for every room, so its
client carries one token signed with that grant alone and renewed long before it expires; the SDK
sends a pre-signed token verbatim (`LiveKitAPI.with_token`). Calls scoped to one room
(dispatches, participants) need a token naming that room and keep the SDK's signing per call.
"""

from __future__ import annotations

import datetime
import time

import aiohttp
from livekit import api
from livekit.api.room_service import RoomService

from token_server.config import Settings

# The room_create token's life, and when a fresh one replaces it: a request that took the old
# one just before has minutes left to use it.
ROOM_CREATE_TOKEN_TTL = datetime.timedelta(minutes=10)
ROOM_CREATE_RENEW_SECONDS = 300.0


def room_create_token(settings: Settings) -> str:
    """A token that may create rooms and nothing else (no room admin, no listing, no join)."""
    return (
        api.AccessToken(settings.api_key, settings.api_secret)
        .with_grants(api.VideoGrants(room_create=True))
        .with_ttl(ROOM_CREATE_TOKEN_TTL)
        .to_jwt()
    )


class LiveKitClients:
    """One session, two clients: `api` signs each call with the key pair; `room_creator` sends
    the shared room_create token. Create inside the running event loop (aiohttp's session)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        timeout = aiohttp.ClientTimeout(total=settings.dispatch_timeout_seconds)
        self._session = aiohttp.ClientSession(timeout=timeout)
        self.api = api.LiveKitAPI(
            settings.livekit_url, settings.api_key, settings.api_secret, session=self._session
        )
        self._creator: api.LiveKitAPI | None = None
        self._renew_at = 0.0

    @property
    def room_creator(self) -> RoomService:
        """The room service for CreateRoom, its token renewed every ROOM_CREATE_RENEW_SECONDS."""
        now = time.monotonic()
        if self._creator is None or now >= self._renew_at:
            self._creator = api.LiveKitAPI.with_token(
                room_create_token(self._settings),
                self._settings.livekit_url,
                session=self._session,
            )
            self._renew_at = now + ROOM_CREATE_RENEW_SECONDS
        return self._creator.room

    async def aclose(self) -> None:
        await self.api.aclose()  # neither client closes a session it was given
        await self._session.close()
