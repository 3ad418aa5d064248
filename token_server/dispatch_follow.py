"""Follow each dispatch until a worker has taken its job, and dispatch again when none did.

livekit-server offers an agent job once. When no worker is registered under the name at that
instant, every worker is at its load threshold, or the chosen worker refuses, the job is dropped:
the dispatch stays listed with no job and the caller waits for an agent that never comes. Self-
hosted LiveKit has no re-dispatch (LiveKit Cloud's `restart_policy` does not apply), so this
module is the "agent watcher" LiveKit's maintainers suggest: after the token answer has gone out,
one background loop per process looks at each followed dispatch (ListDispatch: cost independent
of the rooms on the server) and, when no worker took the job, deletes it and dispatches again,
with backoff, until a worker takes it, the caller has left, or a deadline passes.

Every dispatch ends with one `dispatch_fate` log line: taken after N ms and K dispatches, or
expired / caller left / room closed, and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import itertools
import json
import logging
import time
from dataclasses import dataclass, field

import aiohttp
from livekit import api
from livekit.api.twirp_client import ServerError
from livekit.protocol import agent as agent_proto
from livekit.protocol import models

from token_server.config import Settings
from token_server.dispatch import Dispatcher

logger = logging.getLogger("token_server.dispatch")

FIRST_CHECK_SECONDS = 0.25  # after a dispatch: most jobs are taken (or dropped) by then
CHECK_SECONDS = 0.25  # between looks at a dispatch not yet judged
# A dispatch gets this long before it is replaced. A job a worker accepted shows on the dispatch
# within ~0.25 s, or its agent joins within ~0.5 s from a warm process; replacing sooner could
# send a second agent after one that was merely slow to show.
MIN_ATTEMPT_SECONDS = 1.0
BACKOFF = 1.5
AGENT_NAME_ATTRIBUTE = "lk.agent.name"
_TAKEN_STATUSES = (agent_proto.JS_PENDING, agent_proto.JS_RUNNING, agent_proto.JS_SUCCESS)


class FateKind(enum.StrEnum):
    TAKEN = "taken"  # a worker accepted the job (listed on the dispatch, or its agent is in)
    EXPIRED = "expired"  # the deadline passed with no worker taking it
    CALLER_LEFT = "caller_left"  # the caller joined, then left before any agent came
    ROOM_CLOSED = "room_closed"  # the room no longer exists on the server
    REMOVED = "removed"  # someone else deleted the dispatch
    CANCELLED = "cancelled"  # the endpoint withdrew it (strict-mode timeout, answer not sent)
    SHUTDOWN = "shutdown"  # the token server stopped while following it


@dataclass(frozen=True)
class Fate:
    kind: FateKind
    dispatch_id: str
    dispatches: int  # how many dispatches it took (1 = the first was taken)
    after_seconds: float  # from the first dispatch
    reason: str  # what was last observed, in words

    @property
    def taken(self) -> bool:
        return self.kind is FateKind.TAKEN


@dataclass(eq=False)
class _Followed:
    room: str
    agent_name: str
    metadata: str
    dispatch_id: str
    started: float
    dispatched_at: float
    interval: float = MIN_ATTEMPT_SECONDS
    dispatches: int = 1
    caller_seen: bool = False
    job_error: str = ""
    problem: str = "no worker has taken the job yet"
    fate: asyncio.Future[Fate] = field(default_factory=lambda: _loop().create_future())


def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


class _RoomGone(Exception):
    pass


class _RateLimit:
    """At most `rate` re-dispatches a second across every followed room (a token bucket)."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._tokens = rate
        self._at = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self._rate, self._tokens + (now - self._at) * self._rate)
                self._at = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self._rate)


class DispatchFollower:
    """One loop per process following every dispatch this process created, bounded in number."""

    def __init__(
        self, settings: Settings, lkapi: api.LiveKitAPI, dispatcher: Dispatcher, parallel: int = 16
    ) -> None:
        self._settings = settings
        self._api = lkapi
        self._dispatcher = dispatcher
        self._followed: dict[tuple[str, str], _Followed] = {}
        self._queue: list[tuple[float, int, _Followed]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(parallel)
        self._rate = _RateLimit(settings.dispatch_retry_rate)
        self._steps: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        dispatcher.followed = self.dispatch_id

    # --- what the endpoint calls ---------------------------------------------------------------

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="dispatch-follower")

    def dispatch_id(self, room: str, agent_name: str) -> str | None:
        """The current dispatch of a room being followed: a retry finds it without a server call."""
        followed = self._followed.get((room, agent_name))
        return followed.dispatch_id if followed else None

    @property
    def following(self) -> int:
        return len(self._followed)

    def follow(self, room: str, agent_name: str, metadata: str, dispatch_id: str) -> bool:
        """Start following a new dispatch; False when the bound on followed rooms is reached."""
        key = (room, agent_name)
        if key in self._followed:
            return True
        if len(self._followed) >= self._settings.dispatch_max_followed:
            logger.warning(
                _line(
                    "dispatch_not_followed",
                    room=room,
                    agent_name=agent_name,
                    dispatch_id=dispatch_id,
                    reason=f"already following DISPATCH_MAX_FOLLOWED="
                    f"{self._settings.dispatch_max_followed} dispatches",
                )
            )
            return False
        now = time.monotonic()
        followed = _Followed(room, agent_name, metadata, dispatch_id, now, now)
        self._followed[key] = followed
        self._schedule(followed, now + FIRST_CHECK_SECONDS)
        return True

    async def wait_taken(self, room: str, agent_name: str, seconds: float) -> Fate | None:
        """The dispatch's fate once known, or None if it is still open after `seconds`."""
        followed = self._followed.get((room, agent_name))
        if followed is None:
            return None
        try:
            async with asyncio.timeout(seconds):
                return await asyncio.shield(followed.fate)
        except TimeoutError:
            return None

    def explain(self, room: str, agent_name: str) -> tuple[int, str]:
        """How many dispatches so far, and what was last observed."""
        followed = self._followed.get((room, agent_name))
        if followed is None:
            return 0, ""
        return followed.dispatches, followed.job_error or followed.problem

    async def withdraw(self, room: str, agent_name: str, reason: str) -> None:
        """Stop following and delete the dispatch: nobody will use this room's token."""
        followed = self._followed.get((room, agent_name))
        if followed is not None:
            await self._finish(followed, FateKind.CANCELLED, reason, delete=True)

    async def close(self) -> None:
        """Stop following: each dispatch still open gets a `shutdown` fate line."""
        tasks = [t for t in (self._loop_task, *self._steps) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for followed in list(self._followed.values()):
            await self._finish(followed, FateKind.SHUTDOWN, "the token server stopped")

    # --- the loop -------------------------------------------------------------------------------

    def _schedule(self, followed: _Followed, at: float) -> None:
        heapq.heappush(self._queue, (at, next(self._seq), followed))
        self._wake.set()

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            while self._queue and self._queue[0][0] <= now:
                _, _, followed = heapq.heappop(self._queue)
                if self._followed.get((followed.room, followed.agent_name)) is not followed:
                    continue  # finished meanwhile
                task = asyncio.create_task(self._step(followed))
                self._steps.add(task)
                task.add_done_callback(self._steps.discard)
            self._wake.clear()
            wait = self._queue[0][0] - now if self._queue else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _step(self, followed: _Followed) -> None:
        try:
            async with self._slots:
                next_at = await self._look(followed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not end the follow silently
            logger.exception("dispatch follow step failed", exc_info=exc)
            followed.problem = f"follow step failed: {type(exc).__name__}: {exc}"
            next_at = time.monotonic() + followed.interval
        if next_at is not None and not followed.fate.done():
            self._schedule(followed, next_at)

    async def _look(self, followed: _Followed) -> float | None:
        """One look at a followed dispatch; returns when to look next (None: finished)."""
        settings = self._settings
        now = time.monotonic()
        if now - followed.started >= settings.dispatch_retry_deadline_seconds:
            reason = followed.job_error or followed.problem
            await self._finish(followed, FateKind.EXPIRED, reason, delete=True)
            return None
        try:
            async with asyncio.timeout(settings.dispatch_timeout_seconds):
                listed = await self._job_state(followed)
                if listed is None:
                    await self._finish(followed, FateKind.TAKEN, "a worker accepted the job")
                    return None
                if listed is False:
                    await self._finish(
                        followed, FateKind.REMOVED, "the dispatch is no longer listed"
                    )
                    return None
                if now - followed.dispatched_at < followed.interval:
                    return min(now + CHECK_SECONDS, followed.dispatched_at + followed.interval)
                # No job after a fair wait: look at the room before dispatching again.
                in_room = await self._participants(followed)
                if in_room == "agent":
                    await self._finish(followed, FateKind.TAKEN, "its agent is in the room")
                    return None
                if in_room == "left":
                    await self._finish(
                        followed,
                        FateKind.CALLER_LEFT,
                        "the caller left before an agent came",
                        delete=True,
                    )
                    return None
        except _RoomGone as exc:
            await self._finish(followed, FateKind.ROOM_CLOSED, str(exc))
            return None
        except (TimeoutError, ServerError, aiohttp.ClientError, OSError) as exc:
            followed.problem = f"LiveKit API: {_describe(exc)}"
            return time.monotonic() + followed.interval

        await self._rate.take()
        try:
            async with asyncio.timeout(settings.dispatch_timeout_seconds):
                new_id = await self._dispatcher.redispatch(
                    followed.room, followed.agent_name, followed.metadata, followed.dispatch_id
                )
        except (TimeoutError, ServerError, aiohttp.ClientError, OSError) as exc:
            followed.problem = f"dispatching again failed: {_describe(exc)}"
            return time.monotonic() + followed.interval
        followed.dispatch_id = new_id
        followed.dispatches += 1
        followed.dispatched_at = time.monotonic()
        followed.interval = min(
            followed.interval * BACKOFF, settings.dispatch_retry_max_interval_seconds
        )
        logger.debug(
            _line(
                "dispatch_again",
                room=followed.room,
                agent_name=followed.agent_name,
                dispatch_id=new_id,
                dispatches=followed.dispatches,
            )
        )
        return followed.dispatched_at + FIRST_CHECK_SECONDS

    async def _job_state(self, followed: _Followed) -> bool | None:
        """None: a worker took the job. True: listed, no job yet. False: no longer listed."""
        try:
            dispatches = await self._api.agent_dispatch.list_dispatch(followed.room)
        except ServerError as exc:
            # livekit-server answers for a room only from the node hosting it; none does once
            # the room has closed (it stalls ~3 s, then "no response from servers")
            if exc.code in {"not_found", "unavailable"}:
                raise _RoomGone(f"the room is gone: {_describe(exc)}") from None
            raise
        for dispatch in dispatches:
            if dispatch.id != followed.dispatch_id:
                continue
            jobs = list(dispatch.state.jobs)
            if any(job.state.status in _TAKEN_STATUSES for job in jobs):
                return None
            failed = [job.state.error for job in jobs if job.state.error]
            if failed:
                followed.job_error = f"the worker took the job and it failed: {failed[-1]}"
            else:
                followed.problem = (
                    "no worker took the job: none is registered under this agent name, or "
                    "every one is at its load threshold (livekit-server's log says which)"
                )
            return True
        return False

    async def _participants(self, followed: _Followed) -> str:
        """'agent' when this agent is in the room, 'left' when the caller came and went."""
        listed = await self._api.room.list_participants(
            api.ListParticipantsRequest(room=followed.room)
        )
        callers = 0
        for p in listed.participants:
            if p.kind == models.ParticipantInfo.Kind.AGENT:
                name = p.attributes.get(AGENT_NAME_ATTRIBUTE, followed.agent_name)
                if name == followed.agent_name:
                    return "agent"
            else:
                callers += 1
        if callers:
            followed.caller_seen = True
            return "caller"
        return "left" if followed.caller_seen else "empty"

    async def _finish(
        self, followed: _Followed, kind: FateKind, reason: str, delete: bool = False
    ) -> None:
        key = (followed.room, followed.agent_name)
        if self._followed.get(key) is followed:
            del self._followed[key]
        if followed.fate.done():
            return
        if delete:
            try:
                await self._dispatcher.delete(followed.room, followed.dispatch_id)
            except (TimeoutError, ServerError, aiohttp.ClientError, OSError) as exc:
                reason += f" (deleting the dispatch failed: {_describe(exc)})"
        fate = Fate(
            kind,
            followed.dispatch_id,
            followed.dispatches,
            round(time.monotonic() - followed.started, 3),
            reason,
        )
        followed.fate.set_result(fate)
        level = logging.INFO if kind in {FateKind.TAKEN, FateKind.SHUTDOWN} else logging.WARNING
        logger.log(
            level,
            _line(
                "dispatch_fate",
                room=followed.room,
                agent_name=followed.agent_name,
                fate=kind.value,
                after_ms=round(fate.after_seconds * 1000),
                dispatches=fate.dispatches,
                dispatch_id=fate.dispatch_id,
                reason=reason,
            ),
        )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ServerError):
        return f"{exc.code} {exc.message}".strip()
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return f"{type(exc).__name__}: {exc}"


def _line(event: str, **fields: object) -> str:
    return json.dumps({"event": event, **fields}, separators=(",", ":"))
