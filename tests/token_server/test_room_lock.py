"""The per-room dispatch lock: in-process, and across replicas through a real redis-server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from local_stack import LocalStack, RedisServer
from local_stack.processes import free_port
from token_server.config import load_settings
from token_server.errors import ApiError
from token_server.room_lock import (
    InProcessRoomLock,
    RedisRoomLock,
    lock_key,
    lock_ttl_seconds,
    lock_wait_seconds,
    room_lock_for,
)

GOOD = {
    "LIVEKIT_URL": "ws://127.0.0.1:7880",
    "LIVEKIT_API_KEY": "key",
    "LIVEKIT_API_SECRET": "secret-that-is-long-enough-for-hs256-xx",
    "AGENT_NAME": "voice",
    "TOKEN_SERVER_ALLOW_NO_AUTH": "1",
}


async def hold_briefly(lock: InProcessRoomLock | RedisRoomLock, room: str, log: list[str]) -> None:
    async with lock.hold(room):
        log.append(f"in {room}")
        await asyncio.sleep(0.05)
        log.append(f"out {room}")


# --- pure: no Redis ------------------------------------------------------------------------------


def test_ttl_and_wait_follow_the_dispatch_timeout() -> None:
    s = load_settings({**GOOD, "DISPATCH_TIMEOUT_SECONDS": "3"})
    assert lock_wait_seconds(s) == 3  # a live holder is done within it
    assert lock_ttl_seconds(s) == 6  # outlives the holder's own bound
    assert lock_key("room-1") == "token-server:dispatch-lock:room-1"


async def test_room_lock_for_picks_redis_only_with_redis_url() -> None:
    assert isinstance(room_lock_for(load_settings(GOOD)), InProcessRoomLock)
    lock = room_lock_for(load_settings({**GOOD, "REDIS_URL": "redis://:pw@127.0.0.1:1/0"}))
    try:
        assert isinstance(lock, RedisRoomLock)
        assert lock.name == "redis://:***@127.0.0.1:1/0"
        assert (lock.ttl_seconds, lock.wait_seconds) == (10, 5)
    finally:
        await lock.close()


async def test_in_process_lock_serialises_one_room_and_not_two() -> None:
    lock = InProcessRoomLock(wait_seconds=5)
    log: list[str] = []
    await asyncio.gather(
        hold_briefly(lock, "a", log), hold_briefly(lock, "a", log), hold_briefly(lock, "b", log)
    )
    a_steps = [step for step in log if step.endswith(" a")]
    assert a_steps == ["in a", "out a", "in a", "out a"]  # never two holders of "a"
    assert log.index("in b") < log.index("out a")  # "b" did not wait for "a"
    assert lock.rooms_in_use() == 0


async def test_in_process_lock_waits_a_bounded_time_then_answers_room_busy() -> None:
    lock = InProcessRoomLock(wait_seconds=0.2)
    async with lock.hold("a"):
        started = time.monotonic()
        with pytest.raises(ApiError) as err:
            async with lock.hold("a"):
                pytest.fail("entered a room held by another request")
        waited = time.monotonic() - started
    assert 0.15 <= waited < 1
    assert (err.value.status, err.value.code) == (503, "room_busy")
    assert err.value.headers["Retry-After"] == "1"
    assert lock.rooms_in_use() == 0  # the refused waiter left nothing behind
    async with lock.hold("a"):  # and the room is free again
        pass


async def test_unreachable_redis_fails_closed_fast_and_hides_the_password() -> None:
    password = "pw-that-must-not-leak"
    url = f"redis://default:{password}@127.0.0.1:{free_port()}/0"  # nothing listens there
    lock = RedisRoomLock.from_url(url, ttl_seconds=10, wait_seconds=5)
    try:
        started = time.monotonic()
        with pytest.raises(ApiError) as err:
            async with lock.hold("a"):
                pytest.fail("held a lock in a Redis that is not there")
        assert time.monotonic() - started < 3  # a refused connection answers at once
        problem = await lock.problem()
    finally:
        await lock.close()
    assert (err.value.status, err.value.code) == (503, "redis_unavailable")
    assert err.value.headers["Retry-After"] == "5"
    assert "redis://default:***@127.0.0.1" in err.value.detail
    assert problem is not None and "cannot reach Redis" in problem
    assert password not in err.value.detail + problem


# --- against a real redis-server -----------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with LocalStack(log_dir=Path(tmp_path_factory.mktemp("redis-logs"))) as stack:
        yield stack.start_redis()


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[tuple[RedisRoomLock, ...]]:
    """Two locks on one Redis, each with its own client: two replicas' view of it."""
    locks = tuple(
        RedisRoomLock.from_url(redis_server.url, ttl_seconds=4, wait_seconds=2) for _ in range(2)
    )
    yield locks
    for lock in locks:
        await lock.close()


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.mark.integration
async def test_two_replicas_never_hold_one_room_at_once(
    replicas: tuple[RedisRoomLock, RedisRoomLock], raw: aioredis.Redis
) -> None:
    inside = 0
    most = 0
    entered = 0

    async def enter(lock: RedisRoomLock, room: str) -> None:
        nonlocal inside, most, entered
        async with lock.hold(room):
            inside += 1
            entered += 1
            most = max(most, inside)
            assert 0 < await raw.pttl(lock_key(room)) <= 4000  # it expires on its own
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(enter(replicas[i % 2], "shared-room") for i in range(20)))
    assert (most, entered) == (1, 20)
    assert await raw.exists(lock_key("shared-room")) == 0  # released, not left to expire


@pytest.mark.integration
async def test_other_rooms_do_not_wait(replicas: tuple[RedisRoomLock, RedisRoomLock]) -> None:
    log: list[str] = []
    await asyncio.gather(hold_briefly(replicas[0], "x", log), hold_briefly(replicas[1], "y", log))
    assert log[:2] in (["in x", "in y"], ["in y", "in x"])


@pytest.mark.integration
async def test_a_dead_holders_lock_blocks_the_room_until_it_expires(
    replicas: tuple[RedisRoomLock, RedisRoomLock], raw: aioredis.Redis, redis_server: RedisServer
) -> None:
    # What a replica killed mid check-and-create leaves: the key, with its expiry, and nobody to
    # release it.
    await raw.set(lock_key("orphan"), b"dead-replica-token", px=1500)
    short = RedisRoomLock.from_url(redis_server.url, ttl_seconds=4, wait_seconds=0.3)
    try:
        with pytest.raises(ApiError) as err:
            async with short.hold("orphan"):
                pytest.fail("entered a room another holder still had")
    finally:
        await short.close()
    assert (err.value.status, err.value.code) == (503, "room_busy")
    assert err.value.headers["Retry-After"] in {"1", "2"}  # when the orphan key expires
    started = time.monotonic()
    async with replicas[0].hold("orphan"):  # waits up to 2 s: the key expires within 1.5 s
        waited = time.monotonic() - started
    assert 0.8 < waited < 2.0


@pytest.mark.integration
async def test_a_lock_on_a_password_redis_keeps_the_password_out_of_every_answer(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    password = "correct-horse-battery-staple"
    port = redis_server.address.rsplit(":", 1)[1]
    await raw.config_set("requirepass", password)
    try:
        good = RedisRoomLock.from_url(
            f"redis://:{password}@127.0.0.1:{port}/0", ttl_seconds=4, wait_seconds=1
        )
        wrong = RedisRoomLock.from_url(
            f"redis://:{password}-not@127.0.0.1:{port}/0", ttl_seconds=4, wait_seconds=1
        )
        try:
            async with good.hold("with-auth"):
                pass
            assert await good.problem() is None
            with pytest.raises(ApiError) as err:
                async with wrong.hold("with-auth"):
                    pytest.fail("a wrong password took the lock")
            problem = await wrong.problem()
        finally:
            await good.close()
            await wrong.close()
    finally:
        admin = aioredis.Redis.from_url(f"redis://:{password}@127.0.0.1:{port}/0")
        await admin.config_set("requirepass", "")
        await admin.aclose()
    assert (err.value.status, err.value.code) == (503, "redis_unavailable")
    assert "AuthenticationError" in err.value.detail and problem is not None
    assert password not in err.value.detail + problem + good.name + wrong.name


@pytest.mark.integration
async def test_redis_gone_while_held_the_work_stands_and_the_release_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with LocalStack(log_dir=tmp_path) as stack:
        own = stack.start_redis()
        lock = RedisRoomLock.from_url(own.url, ttl_seconds=4, wait_seconds=1)
        done = False
        try:
            with caplog.at_level(logging.WARNING, "token_server.room_lock"):
                async with lock.hold("r"):
                    stack.stop(own.process)
                    done = True
            with pytest.raises(ApiError) as err:  # and the next request fails closed
                async with lock.hold("r2"):
                    pytest.fail("held a lock without Redis")
        finally:
            await lock.close()
    assert done
    assert any("could not release the dispatch lock of room 'r'" in m for m in caplog.messages)
    assert err.value.code == "redis_unavailable"
