"""The local cluster's parts: redis-server, and livekit-server nodes sharing it."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from livekit import api

from local_stack import LocalStack

pytestmark = pytest.mark.integration


async def test_two_nodes_on_one_redis_share_their_rooms(tmp_path: Path) -> None:
    secret = secrets.token_urlsafe(32)
    with LocalStack(log_dir=tmp_path) as stack:
        redis = stack.start_redis()
        a = stack.start_livekit(api_secret=secret, redis=redis)
        b = stack.start_livekit(api_secret=secret, redis=redis)
        assert a.url != b.url
        async with (
            api.LiveKitAPI(a.http_url, a.api_key, secret) as on_a,
            api.LiveKitAPI(b.http_url, b.api_key, secret) as on_b,
        ):
            await on_a.room.create_room(api.CreateRoomRequest(name="made-on-a"))
            listed = await on_b.room.list_rooms(api.ListRoomsRequest(names=["made-on-a"]))
        assert [room.name for room in listed.rooms] == ["made-on-a"]
        children = [redis.process, a.process, b.process]
    assert not any(child.alive() for child in children)
