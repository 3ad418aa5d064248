"""The per-room lock around the dispatch's check-and-create, so a room gets one agent.

A new room needs none: it is created with the agent among its own dispatches, which livekit-server
launches once. A room that existed without the agent does: two token requests for it at the same
instant would both find no dispatch and both create one, two agents in the call. Whoever holds
the room's lock checks and creates; the other waits, then finds the dispatch made. Which lock is
chosen once at start-up (`room_lock_for`):

- `InProcessRoomLock` (no `REDIS_URL`): one `asyncio.Lock` per room while in use. It covers
  requests reaching this process, not another worker process or replica.
- `RedisRoomLock` (`REDIS_URL` set): redis-py's `Lock` (SET NX PX, released by a token check), so
  every replica and worker process sharing that Redis takes turns per room. The key expires after
  `ttl_seconds`: a replica that dies holding it blocks that room for at most that long.

Both wait at most `wait_seconds` for the room, then answer 503 `room_busy` (with Retry-After).
The Redis one fails closed: when Redis cannot be reached it answers 503 `redis_unavailable`, and
the request dispatches nothing and gets no token — with REDIS_URL set, one agent per room is the
promise; going on without the lock would quietly break it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol
from urllib.parse import unquote, urlparse

import redis.asyncio as aioredis
from redis.asyncio.lock import Lock
from redis.backoff import ExponentialBackoff
from redis.exceptions import LockError, RedisError
from redis.retry import Retry

from token_server.config import Settings, redact_url
from token_server.errors import ApiError

logger = logging.getLogger("token_server.room_lock")

KEY_PREFIX = "token-server:dispatch-lock:"
# One Redis command on a LAN answers in well under a millisecond: past this, Redis is unreachable.
REDIS_IO_SECONDS = 2.0
POLL_SECONDS = 0.05  # how often a waiter tries a room another request holds
RETRY_AFTER_UNAVAILABLE = 5  # seconds, for a caller when Redis cannot be reached


def lock_key(room: str) -> str:
    """The Redis key of a room's lock (room names are binary-safe Redis keys)."""
    return KEY_PREFIX + room


def lock_ttl_seconds(settings: Settings) -> float:
    """How long a lock lives if its holder never releases it (it died): the check-and-create
    gives up after DISPATCH_TIMEOUT_SECONDS, and the key outlives that by as much again (a call
    LiveKit was still serving when the holder gave up, a stalled event loop)."""
    return 2 * settings.dispatch_timeout_seconds


def lock_wait_seconds(settings: Settings) -> float:
    """How long a request waits for a room another request holds: a live holder is done (or has
    given up) within DISPATCH_TIMEOUT_SECONDS of taking it, which was before this one came."""
    return settings.dispatch_timeout_seconds


def room_busy(room: str, waited: float, retry_after: int) -> ApiError:
    return ApiError(
        503,
        "room_busy",
        f"another token request for room {room!r} (on this or another replica) held its dispatch "
        f"lock for the {waited:g}s this one waited; nothing was dispatched, retry",
        headers={"Retry-After": str(max(1, retry_after))},
    )


def redis_unavailable(where: str, why: str) -> ApiError:
    return ApiError(
        503,
        "redis_unavailable",
        f"cannot reach Redis at {where} for the room's dispatch lock ({why}); "
        "nothing was dispatched, retry",
        headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE)},
    )


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"no answer within {REDIS_IO_SECONDS:g}s"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


class RoomLock(Protocol):
    """Held around a room's check-and-create; the same interface in-process and across replicas."""

    name: str  # for the start-up log line: never carries a password

    def hold(self, room: str) -> AbstractAsyncContextManager[None]:
        """Hold `room`'s lock for the block; raises ApiError 503 when it cannot be taken."""
        ...

    async def problem(self) -> str | None:
        """Why the lock cannot be taken now (readiness), or None."""
        ...

    async def close(self) -> None: ...


class InProcessRoomLock:
    """One asyncio.Lock per room while in use, so concurrent requests in this process serialise."""

    name = "in-process"

    def __init__(self, wait_seconds: float) -> None:
        self.wait_seconds = wait_seconds
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, room: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(room, (asyncio.Lock(), 0))
        self._locks[room] = (lock, users + 1)
        try:
            try:
                async with asyncio.timeout(self.wait_seconds):
                    await lock.acquire()
            except TimeoutError:
                raise room_busy(room, self.wait_seconds, math.ceil(self.wait_seconds)) from None
            try:
                yield
            finally:
                lock.release()
        finally:
            lock, users = self._locks[room]
            if users == 1:
                del self._locks[room]
            else:
                self._locks[room] = (lock, users - 1)

    def rooms_in_use(self) -> int:
        return len(self._locks)

    async def problem(self) -> str | None:
        return None

    async def close(self) -> None:
        return None


class RedisRoomLock:
    """redis-py's maintained Lock, one key per room, shared by every replica on that Redis."""

    def __init__(
        self,
        client: aioredis.Redis,
        where: str,
        ttl_seconds: float,
        wait_seconds: float,
        secret: str = "",
    ) -> None:
        self._client = client
        self.name = where  # the URL without its password
        self.ttl_seconds = ttl_seconds
        self.wait_seconds = wait_seconds
        self._secret = secret  # the URL's password: scrubbed from any text this lock emits

    def _describe(self, exc: BaseException) -> str:
        text = describe(exc)
        return text.replace(self._secret, "***") if self._secret else text

    @classmethod
    def from_url(cls, url: str, ttl_seconds: float, wait_seconds: float) -> RedisRoomLock:
        """A client for `url` (no connection yet: the first command connects). Commands time out
        after REDIS_IO_SECONDS and are tried once more on a fresh connection (a Redis restart
        leaves the pooled ones dead), so an outage answers fast."""
        client = aioredis.Redis.from_url(
            url,
            socket_timeout=REDIS_IO_SECONDS,
            socket_connect_timeout=REDIS_IO_SECONDS,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=1),
        )
        secret = urlparse(url).password or ""
        return cls(client, redact_url(url), ttl_seconds, wait_seconds, unquote(secret))

    @contextlib.asynccontextmanager
    async def hold(self, room: str) -> AsyncIterator[None]:
        lock = self._client.lock(
            lock_key(room),
            timeout=self.ttl_seconds,
            sleep=POLL_SECONDS,
            blocking_timeout=self.wait_seconds,
            thread_local=False,  # a new Lock per hold, used by this one task
        )
        try:
            # the wait, plus the one command in flight when it ends (and its one retry)
            async with asyncio.timeout(self.wait_seconds + 2 * REDIS_IO_SECONDS + 0.5):
                acquired = await lock.acquire()
        except (RedisError, OSError, TimeoutError) as exc:
            raise redis_unavailable(self.name, self._describe(exc)) from None
        if not acquired:
            raise room_busy(room, self.wait_seconds, await self._expires_in(room))
        try:
            yield
        finally:
            await self._release(lock, room)

    async def _release(self, lock: Lock, room: str) -> None:
        """Give the room back. When that fails (Redis went away meanwhile) the work is done all
        the same, and the key expires on its own: log it and go on."""
        try:
            async with asyncio.timeout(2 * REDIS_IO_SECONDS + 0.5):
                await lock.release()
        except LockError:  # the key expired while held: the holder overran the TTL
            logger.warning(
                "dispatch lock of room %r expired before its release (held over %gs)",
                room,
                self.ttl_seconds,
            )
        except (RedisError, OSError, TimeoutError) as exc:
            logger.warning(
                "could not release the dispatch lock of room %r at %s (%s); it expires within %gs",
                room,
                self.name,
                self._describe(exc),
                self.ttl_seconds,
            )

    async def _expires_in(self, room: str) -> int:
        """Whole seconds until the holder's key expires (a hint for Retry-After)."""
        try:
            async with asyncio.timeout(REDIS_IO_SECONDS):
                ms = await self._client.pttl(lock_key(room))
        except (RedisError, OSError, TimeoutError):
            ms = -1
        return math.ceil(ms / 1000) if ms > 0 else 1

    async def problem(self) -> str | None:
        try:
            async with asyncio.timeout(2 * REDIS_IO_SECONDS + 0.5):
                await self._client.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            return f"cannot reach Redis at {self.name}: {self._describe(exc)}"
        return None

    async def close(self) -> None:
        await self._client.aclose()


def room_lock_for(settings: Settings) -> RoomLock:
    """The lock the settings ask for: across replicas with REDIS_URL, else in this process.
    Build it inside the running event loop (the Redis client's pool belongs to it)."""
    wait = lock_wait_seconds(settings)
    if not settings.redis_url:
        return InProcessRoomLock(wait)
    return RedisRoomLock.from_url(settings.redis_url, lock_ttl_seconds(settings), wait)
