"""The endpoint's LiveKit clients against a real livekit-server: rooms are created with one
shared token that may do nothing else, renewed on time; room-scoped calls still sign per call."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from livekit import api
from livekit.api.twirp_client import ServerError

from local_stack import LiveKitServer
from token_server import livekit_clients
from token_server.config import Settings
from token_server.livekit_clients import (
    ROOM_CREATE_RENEW_SECONDS,
    ROOM_CREATE_TOKEN_TTL,
    LiveKitClients,
    room_create_token,
)


def settings_for(livekit: LiveKitServer) -> Settings:
    return Settings(
        livekit_url=livekit.url,
        livekit_public_url=livekit.url,
        api_key=livekit.api_key,
        api_secret=livekit.api_secret,
    )


def test_the_room_create_token_grants_room_creation_only() -> None:
    settings = Settings(
        livekit_url="ws://x", livekit_public_url="ws://x", api_key="key", api_secret="s" * 32
    )
    claims = jwt.decode(room_create_token(settings), "s" * 32, algorithms=["HS256"])
    video = claims["video"]
    assert video["roomCreate"] is True
    # nothing else an API call checks (the SDK's default publish/subscribe flags need a join)
    for grant in ("roomJoin", "roomAdmin", "roomList", "roomRecord", "ingressAdmin", "room"):
        assert not video.get(grant), grant
    assert claims["iss"] == "key"
    assert claims["exp"] - claims["nbf"] == ROOM_CREATE_TOKEN_TTL.total_seconds()
    assert ROOM_CREATE_RENEW_SECONDS <= ROOM_CREATE_TOKEN_TTL.total_seconds() / 2


async def test_rooms_are_created_with_one_token_renewed_on_time(
    livekit_server: LiveKitServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = LiveKitClients(settings_for(livekit_server))
    room = f"clients-{uuid.uuid4()}"
    try:
        creator = clients.room_creator
        created = await creator.create_room(api.CreateRoomRequest(name=room))
        assert created.name == room
        assert clients.room_creator is creator  # the same signed token, not one per call

        # the token can create rooms and nothing else: listing them is refused
        with pytest.raises(ServerError) as refused:
            await creator.list_rooms(api.ListRoomsRequest(names=[room]))
        assert refused.value.code in {"permission_denied", "unauthenticated"}

        # the key pair's client still signs each room-scoped call itself (accepted: the room's
        # only dispatch is the default one livekit-server gives a room created without agents)
        listed = await clients.api.agent_dispatch.list_dispatch(room)
        assert [d.agent_name for d in listed] == [""]

        later = time.monotonic() + ROOM_CREATE_RENEW_SECONDS + 1
        monkeypatch.setattr(livekit_clients.time, "monotonic", lambda: later)
        renewed = clients.room_creator
        assert renewed is not creator
        again = await renewed.create_room(api.CreateRoomRequest(name=room))
        assert again.sid == created.sid  # the live room, as CreateRoom answers for one
    finally:
        await clients.api.room.delete_room(api.DeleteRoomRequest(room=room))
        await clients.aclose()
